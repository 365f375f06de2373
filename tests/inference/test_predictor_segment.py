"""Inference on your own images: SamAdaptPredictor and `samadapt segment` give the module's own predictions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules.pipeline.transforms import letterbox
from samadapt.cli import main
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.model import parse_prompt_kinds
from samadapt.sam.preprocess import boxes_to_input, coords_to_input, to_original
from samadapt.training.module import SamAdaptModule


def demo_image(shapes_root: str, index: int = 1) -> Path:
    return Path(shapes_root) / "images" / "train2014" / f"COCO_train2014_{index:012d}.jpg"  # 160 x 120


@torch.no_grad()
def module_probs(ckpt: Path, image: Path, text=None, points=(), box=None) -> np.ndarray:
    """The LightningModule's own forward on the letterboxed image, logits resized to the original size (as SAM's
    postprocess_masks), prompts scaled per axis (as SAM's apply_coords), then probabilities."""
    module = SamAdaptModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    rgb = np.asarray(Image.open(image).convert("RGB"))
    h, w = rgb.shape[:2]
    size = module.model.image_size
    boxed = letterbox(rgb, np.zeros((h, w)), size)
    kinds = [k for k, given in (("text", text), ("points", points), ("box", box)) if given]
    combo = "+".join(kinds) or "none"
    module.eval_kinds = {combo: parse_prompt_kinds(combo)}  # evaluate with exactly this prompt combination
    batch = {"image": boxed.image[None], "text": [text or ""], "orig_size": torch.tensor([[h, w]]),
             "points": torch.tensor(coords_to_input([list(p) for p in points] or [[0.0, 0.0]], (h, w), size))[None],
             "point_labels": torch.tensor([[1] * len(points) or [-1]]),
             "box": torch.tensor(boxes_to_input([box or [0.0] * 4], (h, w), size), dtype=torch.float32)}
    low_res, _ = module(batch, combo)
    return to_original(module.model.upsample(low_res)[:, 0], (h, w)).sigmoid()[0].numpy()


CASES = {
    "text": {"text": "the red circle"},
    "text+point": {"text": "the red circle", "points": [(40.0, 70.0)]},
    "box": {"box": [20.0, 30.0, 90.0, 100.0]},
}


def segment_args(case: dict) -> list[str]:
    args = ["--text", case["text"]] if "text" in case else []
    args += [a for p in case.get("points", []) for a in ("--point", f"{p[0]:g},{p[1]:g}")]
    return args + (["--box", ",".join(f"{v:g}" for v in case["box"])] if "box" in case else [])


@pytest.mark.parametrize("run", ["shallow", "ldit"])
@pytest.mark.parametrize("case", list(CASES))
def test_segment_writes_the_modules_own_masks(case, run, trained_runs, shapes_root, tmp_path):
    _, ckpt = trained_runs[run]
    image = demo_image(shapes_root)
    prompts = CASES[case]
    expected = module_probs(ckpt, image, prompts.get("text"), prompts.get("points", ()), prompts.get("box"))
    threshold = float(np.median(expected))  # half the pixels on: a mask with something to get wrong
    main(["segment", "--ckpt", str(ckpt), "--image", str(image), "--out", str(tmp_path / "out"),
          "--threshold", repr(threshold), "--precision", "fp32", *segment_args(prompts)])

    mask = np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_mask.png"))
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, expected > threshold)
    assert 0.2 < (mask == 255).mean() < 0.8
    overlay = Image.open(tmp_path / "out" / f"{image.stem}_overlay.png")
    assert overlay.size == (160, 120) and overlay.mode == "RGB"
    record = json.loads((tmp_path / "out" / "segment.json").read_text())["images"][str(image)]
    assert record["mask"] == f"{image.stem}_mask.png" and np.isfinite(record["score"])


def count_encoder_calls(predictor: SamAdaptPredictor) -> list[int]:
    calls = [0]
    predictor.model.sam.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_predictor_reuses_the_image_embedding_when_the_encoder_ignores_text(trained_runs, shapes_root):
    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32")
    assert predictor.reuses_image_embedding and predictor.uses_text
    calls = count_encoder_calls(predictor)
    predictor.set_image(demo_image(shapes_root))
    a = predictor.predict(text="the red circle")
    b = predictor.predict(text="the blue square")
    c = predictor.predict(text="the red circle", points=[(40, 70), (100, 20)], point_labels=[1, 0])
    assert calls[0] == 1  # one encoding, three prompts
    assert a.masks.shape == (1, 120, 160) and a.scores.shape == (1,)
    assert not np.allclose(a.probs, b.probs) and not np.allclose(a.probs, c.probs)  # the prompts matter
    np.testing.assert_array_equal(predictor.predict(text="the red circle").probs, a.probs)


def test_predictor_reencodes_per_text_when_the_encoder_reads_it(trained_runs, shapes_root):
    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["ldit"][1], precision="fp32")
    assert not predictor.reuses_image_embedding
    calls = count_encoder_calls(predictor)
    predictor.set_image(demo_image(shapes_root))
    predictor.predict(text="the red circle")
    predictor.predict(text="the blue square")
    assert calls[0] == 2


def test_predictor_one_mask_per_box(trained_runs, shapes_root):
    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32")
    image = demo_image(shapes_root)
    both = predictor.predict(image, boxes=[[20, 30, 90, 100], [0, 0, 159, 119]])
    assert both.masks.shape == (2, 120, 160)
    np.testing.assert_allclose(both.probs[1], predictor.predict(boxes=[0, 0, 159, 119]).probs[0], atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--image", "nope.jpg"], "image not found: nope.jpg"),
    (["--point", "200,10"], "point (200, 10) is outside the 160x120 image"),
    (["--point", "12"], "--point '12' is not x,y"),
    (["--box", "50,10,20,40"], "needs x0 <= x1"),
    (["--box", "0,0,170,40"], "box corner (170, 40) is outside"),
    (["--point", "nan,10"], "--point 'nan,10' holds nan: give finite numbers"),
    (["--box", "0,0,inf,40"], "--box '0,0,inf,40' holds inf"),
])
def test_segment_bad_input_is_one_clear_message(args, message, trained_runs, shapes_root, tmp_path, capsys):
    image_args = [] if "--image" in args else ["--image", str(demo_image(shapes_root))]
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "--ckpt", str(trained_runs["shallow"][1]), "--out", str(tmp_path / "out"), "--text", "x",
              *image_args, *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_nan_or_infinite_prompts_are_refused_by_the_predictor(trained_runs, shapes_root):
    """SAM would give an empty mask and a NaN score for them, without a word."""
    from samadapt.errors import SamAdaptError

    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32")
    predictor.set_image(demo_image(shapes_root))
    with pytest.raises(SamAdaptError, match=r"point \(nan, 70\) holds nan: prompts must be finite"):
        predictor.predict(points=[(40, 70), (float("nan"), 70)])
    with pytest.raises(SamAdaptError, match=r"box \(20, 30, inf, 100\) holds inf"):
        predictor.predict(boxes=[20, 30, float("inf"), 100])
    with pytest.raises(SamAdaptError, match=r"boxes \(nan, 0, 5, 5\) holds nan"):
        predictor.predict_torch(boxes=torch.tensor([[float("nan"), 0, 5, 5]]), multimask_output=False)


def test_segment_json_is_valid_json_even_for_a_nan_score(trained_runs, shapes_root, tmp_path, monkeypatch):
    predict = SamAdaptPredictor.predict

    def nan_scores(self, *args, **kwargs):
        result = predict(self, *args, **kwargs)
        result.scores[:] = np.nan  # as a model with diverged weights gives
        return result

    monkeypatch.setattr(SamAdaptPredictor, "predict", nan_scores)
    image = demo_image(shapes_root)
    main(["segment", "--ckpt", str(trained_runs["shallow"][1]), "--image", str(image), "--out", str(tmp_path),
          "--text", "the red circle"])

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    record = json.loads((tmp_path / "segment.json").read_text(), parse_constant=refuse)["images"][str(image)]
    assert record["score"] is None


def test_segment_folder(trained_runs, shapes_root, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in (1, 2):
        Image.open(demo_image(shapes_root, i)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    main(["segment", "--ckpt", str(trained_runs["shallow"][1]), "--image", str(folder), "--out",
          str(tmp_path / "out"), "--text", "the red circle"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img1_mask.png", "img1_overlay.png", "img2_mask.png", "img2_overlay.png", "segment.json"]


def test_text_on_a_text_blind_adapter_is_refused(trained_runs, shapes_root):
    from samadapt.errors import SamAdaptError

    predictor = SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32")
    predictor.set_image(demo_image(shapes_root))
    with pytest.raises(SamAdaptError, match="empty"):
        predictor.predict(text="  ")
    with pytest.raises(SamAdaptError, match="no image"):
        SamAdaptPredictor(predictor.module, precision="fp32").predict(text="the red circle")


def test_unreadable_checkpoint_or_missing_base_sam_is_one_clear_message(trained_runs, tmp_path):
    from samadapt.errors import SamAdaptError

    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SamAdaptError, match="cannot load .*junk.ckpt as a samadapt checkpoint"):
        SamAdaptPredictor.from_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(SamAdaptError, match="SAM checkpoint not found: .*moved.pth"):
        SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], sam_checkpoint=str(tmp_path / "moved.pth"))
