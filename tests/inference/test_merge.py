"""`samadapt export --merge`: a run whose result is SAM with other weights (decoder_only / SAM-F, full, LoRA) as one
official-format checkpoint; segment_anything's SamPredictor on it gives samadapt's predictor's masks for the run."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.inference.export import merge_into_sam
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.sam.config import SAM_CONFIGS
from tests.conftest import TEST_SIZE
from tests.inference.test_predictor_segment import demo_image
from tests.inference.test_sam_parity import official_small_sam

PROMPTS = {"none": {}, "box": {"boxes": [20, 30, 90, 100]},
           "points": {"points": [(40, 70), (120, 20)], "point_labels": [1, 0]}}


@pytest.fixture(scope="module")
def mergeable_runs(tmp_path_factory, tiny_sam_checkpoint, shapes_root, tiny_bert) -> dict:
    """decoder_only and LoRA runs (2 steps) with their trained weights moved well away from the base SAM, so
    masks from a merge that left them out would differ. name -> checkpoint."""
    from tests.helpers.tiny_runs import fit_and_test

    out = tmp_path_factory.mktemp("merge_runs")
    runs = {}
    for name in ("decoder_only", "lora"):
        _, last = fit_and_test(f"demo/{name}", out, name, tiny_sam_checkpoint, shapes_root, tiny_bert)
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        gen = torch.Generator().manual_seed(0)
        for value in checkpoint["state_dict"].values():
            value.add_(0.2 * value.abs().mean().clamp(min=0.05) * torch.randn(value.shape, generator=gen))
        runs[name] = out / f"{name}.ckpt"
        torch.save(checkpoint, runs[name])
    return runs


def official_predictor(path) -> SamPredictor:
    """segment_anything's classes at the run's size (the tiny variant at the tests' 64 px), strictly loaded."""
    sam = official_small_sam(replace(SAM_CONFIGS["tiny"], image_size=TEST_SIZE))
    sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return SamPredictor(sam)


@pytest.mark.parametrize("run", ["decoder_only", "lora"])
def test_merged_checkpoint_gives_samadapts_masks_through_SamPredictor(run, mergeable_runs, shapes_root, tmp_path,
                                                                      capsys):
    merged = tmp_path / "merged.pth"
    main(["export", "--ckpt", str(mergeable_runs[run]), "--out", str(merged), "--merge"])
    assert f"for {TEST_SIZE} px input" in capsys.readouterr().out
    image = demo_image(shapes_root)
    theirs = official_predictor(merged)
    theirs.set_image(np.asarray(Image.open(image).convert("RGB")))
    ours = SamAdaptPredictor.from_checkpoint(mergeable_runs[run], precision="fp32")
    ours.set_image(image)
    for name, prompt in PROMPTS.items():
        points = None if "points" not in prompt else np.array(prompt["points"], dtype=float)
        labels = None if "points" not in prompt else np.array(prompt["point_labels"])
        box = None if "boxes" not in prompt else np.array(prompt["boxes"], dtype=float)
        logits, _, _ = theirs.predict(points, labels, box, multimask_output=False, return_logits=True)
        result = ours.predict(**prompt)
        diff = float(np.abs(result.logits[0] - logits[0]).max())
        assert diff < 1e-4, f"{run} {name}: logits differ by up to {diff:g}"
        np.testing.assert_array_equal(result.masks[0], logits[0] > 0)
        assert 0.0 < result.masks[0].mean() < 1.0 or name == "none"


def test_merged_lora_is_the_lora_model_not_the_base(mergeable_runs, tiny_sam_checkpoint, tmp_path):
    """The folded qkv weights differ from the base SAM's (the LoRA update is in them); other weights stay."""
    main(["export", "--ckpt", str(mergeable_runs["lora"]), "--out", str(tmp_path / "merged.pth"), "--merge"])
    merged = torch.load(tmp_path / "merged.pth", weights_only=True)
    base = torch.load(tiny_sam_checkpoint, weights_only=True)
    assert not any("lora" in key or "base_layer" in key for key in merged)
    qkv = "image_encoder.blocks.0.attn.qkv.weight"
    assert (merged[qkv] - base[qkv]).abs().max() > 1e-3
    proj = "image_encoder.blocks.0.attn.proj.weight"  # not a LoRA target: untouched
    assert torch.equal(merged[proj], base[proj])


def test_methods_that_add_parts_cannot_merge(trained_runs, tmp_path, capsys):
    for run, reason in (("shallow", "it reads text"), ("ldit", "it reads text")):
        with pytest.raises(SystemExit):
            main(["export", "--ckpt", str(trained_runs[run][1]), "--out", str(tmp_path / "x.pth"), "--merge"])
        err = capsys.readouterr().err
        assert "cannot be merged into a SAM checkpoint" in err and reason in err and "without --merge" in err
    checkpoint = torch.load(trained_runs["shallow"][1], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["method"] = "parallel_adapter"  # text-blind, but adapters SAM does not have
    torch.save(checkpoint, tmp_path / "adapter.ckpt")
    with pytest.raises(SamAdaptError, match="a parallel_adapter run cannot.*layers or prompts that SAM does not have"):
        merge_into_sam(tmp_path / "adapter.ckpt", tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


def test_a_centre_letterboxed_run_is_not_merged(mergeable_runs, tmp_path):
    """SamPredictor places images top-left: a SAM trained on centred frames would be merged into the wrong input."""
    checkpoint = torch.load(mergeable_runs["decoder_only"], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["letterbox"] = "center"
    torch.save(checkpoint, tmp_path / "centred.ckpt")
    with pytest.raises(SamAdaptError, match="letterbox 'center'.*without --merge"):
        merge_into_sam(tmp_path / "centred.ckpt", tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("run", ["decoder_only", "lora"])
def test_automatic_masks_equal_segment_anythings_generator_on_the_merged_sam(run, mergeable_runs, shapes_root,
                                                                            tmp_path):
    """The predictor's automatic_mask_generator is segment_anything's generator on the run's SAM: the same
    masks, scores and boxes as that generator on the merged official checkpoint, from the same image file."""
    from segment_anything import SamAutomaticMaskGenerator

    options = {"points_per_side": 6, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.9}
    image = np.asarray(Image.open(demo_image(shapes_root)).convert("RGB"))
    ours = SamAdaptPredictor.from_checkpoint(mergeable_runs[run]).automatic_mask_generator(**options).generate(image)
    merged = tmp_path / "merged.pth"
    merge_into_sam(mergeable_runs[run], merged)
    theirs = SamAutomaticMaskGenerator(official_predictor(merged).model, **options).generate(image)
    assert len(ours) == len(theirs) > 0
    for mine, official in zip(ours, theirs, strict=True):
        assert mine["segmentation"].shape == image.shape[:2]
        np.testing.assert_array_equal(mine["segmentation"], official["segmentation"])
        assert mine["bbox"] == official["bbox"]
        assert mine["predicted_iou"] == pytest.approx(official["predicted_iou"], abs=1e-4)


def test_automatic_masks_are_refused_for_runs_that_are_not_sam(trained_runs):
    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32")
    with pytest.raises(SamAdaptError, match="automatic masks need a run whose result is SAM itself"):
        predictor.automatic_mask_generator()
