"""SamAdaptPredictor's SamPredictor entry points give SamPredictor's results on the same official-format checkpoint,
from the image file: multimask_output (3 masks and scores), a second round with mask_input (the first round's
low-res logits), predict_torch on a batch of boxes, get_image_embedding; reset_image forgets the image."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samadapt.errors import SamAdaptError
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.sam.preprocess import boxes_to_input
from samadapt.training.module import SamAdaptModule
from tests.helpers.text import make_tiny_bert
from tests.inference.test_sam_parity import IMAGE_HW, setup  # noqa: F401  (setup: the shared fixture)

POINTS = np.array([(260.0, 170.0), (100.0, 300.0)])
LABELS = np.array([1, 0])
BOXES = np.array([(150.0, 90.0, 420.0, 280.0), (60.0, 40.0, 200.0, 160.0)])


def predictors(setup) -> tuple[SamAdaptPredictor, SamPredictor]:  # noqa: F811
    ours = SamAdaptPredictor(setup["module"], precision="fp32")
    ours.set_image(setup["folder"] / "photo.jpg")
    theirs = SamPredictor(setup["official"])
    theirs.set_image(setup["rgb"])
    return ours, theirs


def assert_close(ours, theirs, what: str) -> None:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs SamPredictor's {theirs.shape}"
    diff = float(np.abs(ours - theirs).max())
    assert diff < 1e-4, f"{what}: differs from SamPredictor's by up to {diff:g}"


def test_multimask_output_gives_samPredictors_three_masks_and_scores(setup):  # noqa: F811
    ours, theirs = predictors(setup)
    masks, scores, low_res = theirs.predict(POINTS, LABELS, multimask_output=True)
    logits, _, _ = theirs.predict(POINTS, LABELS, multimask_output=True, return_logits=True)
    result = ours.predict(points=POINTS, point_labels=LABELS, multimask_output=True)
    assert result.masks.shape == (3, *IMAGE_HW) and result.masks.dtype == bool
    np.testing.assert_array_equal(result.masks, masks)
    assert_close(result.scores, scores, "scores")
    assert_close(result.low_res_logits, low_res, "low-res logits")
    as_logits = ours.predict(points=POINTS, point_labels=LABELS, multimask_output=True, return_logits=True)
    assert as_logits.masks.dtype == np.float32
    assert_close(as_logits.masks, logits, "return_logits masks")


def test_a_second_round_with_mask_input_equals_samPredictors(setup):  # noqa: F811
    ours, theirs = predictors(setup)
    _, scores, low_res = theirs.predict(POINTS[:1], LABELS[:1], multimask_output=True)
    best = int(np.argmax(scores))
    theirs_second, theirs_scores, _ = theirs.predict(POINTS, LABELS, mask_input=low_res[best][None],
                                                     multimask_output=False, return_logits=True)
    first = ours.predict(points=POINTS[:1], point_labels=LABELS[:1], multimask_output=True)
    assert int(np.argmax(first.scores)) == best
    second = ours.predict(points=POINTS, point_labels=LABELS, mask_input=first.low_res_logits[[best]])
    assert_close(second.logits, theirs_second, "second-round logits")
    assert_close(second.scores, theirs_scores, "second-round score")
    without = ours.predict(points=POINTS, point_labels=LABELS)
    assert np.abs(without.logits - second.logits).max() > 1e-3, "the mask prompt changes the result"
    with pytest.raises(SamAdaptError, match=r"mask_input must have shape \(1, 256, 256\)"):
        ours.predict(points=POINTS, point_labels=LABELS, mask_input=np.zeros((256, 256)))


def test_predict_torch_on_two_boxes_equals_samPredictors(setup):  # noqa: F811
    ours, theirs = predictors(setup)
    official_boxes = theirs.transform.apply_boxes_torch(torch.as_tensor(BOXES), IMAGE_HW)
    masks, scores, low_res = theirs.predict_torch(None, None, boxes=official_boxes, multimask_output=False)
    our_boxes = torch.as_tensor(boxes_to_input(BOXES, IMAGE_HW, 1024, ours.letterbox))
    torch.testing.assert_close(our_boxes.float(), official_boxes.float())
    our_masks, our_scores, our_low_res = ours.predict_torch(boxes=our_boxes, multimask_output=False)
    assert our_masks.shape == (2, 1, *IMAGE_HW)
    assert torch.equal(our_masks, masks)
    assert_close(our_scores, scores, "scores")
    assert_close(our_low_res, low_res, "low-res logits")
    multi, multi_scores, _ = ours.predict_torch(boxes=our_boxes)  # SamPredictor's default: 3 masks each
    theirs_multi, _, _ = theirs.predict_torch(None, None, boxes=official_boxes)
    assert multi.shape == (2, 3, *IMAGE_HW) and multi_scores.shape == (2, 3)
    assert torch.equal(multi, theirs_multi)


def test_get_image_embedding_and_reset_image(setup):  # noqa: F811
    ours, theirs = predictors(setup)
    assert_close(ours.get_image_embedding(), theirs.get_image_embedding(), "image embedding")
    ours.reset_image()
    with pytest.raises(SamAdaptError, match="set_image"):
        ours.predict(boxes=BOXES[0])
    with pytest.raises(SamAdaptError, match="set_image"):
        ours.get_image_embedding()


def test_text_methods_take_multimask_and_mask_input(setup, tmp_path):  # noqa: F811
    """A method that adds text tokens to the decoder's prompts goes through the same decoder: 3 masks, and the
    mask prompt is read. A method whose encoder reads the text has no single image embedding: one clear error."""
    bert = make_tiny_bert(tmp_path)
    module = SamAdaptModule(method="shallow_fusion", sam_variant="small_1024", sam_checkpoint=str(setup["sam_path"]),
                            text_encoder="bert", text_options={"name_or_path": bert}, threshold=0.0,
                            threshold_on="logits")
    ours = SamAdaptPredictor(module, precision="fp32")
    ours.set_image(setup["folder"] / "photo.jpg")
    first = ours.predict(text="the red circle", multimask_output=True)
    assert first.masks.shape == (3, *IMAGE_HW) and first.scores.shape == (3,)
    assert first.low_res_logits.shape == (3, 256, 256)
    best = [int(np.argmax(first.scores))]
    second = ours.predict(text="the red circle", mask_input=first.low_res_logits[best])
    plain = ours.predict(text="the red circle")
    assert second.masks.shape == (1, *IMAGE_HW)
    assert np.abs(second.logits - plain.logits).max() > 1e-3, "the mask prompt changes the result"

    lora = SamAdaptPredictor(SamAdaptModule(method="lora", sam_variant="small_1024",
                                            sam_checkpoint=str(setup["sam_path"])), precision="fp32")
    lora.set_image(setup["folder"] / "photo.jpg")
    with pytest.raises(SamAdaptError, match="no one image embedding"):
        lora.get_image_embedding()
    assert lora.predict(boxes=BOXES[0], multimask_output=True).masks.shape == (3, *IMAGE_HW)
