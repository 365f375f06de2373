"""`letterbox: center` (the released DIT code's placement): a sample is the top-left sample moved by its content
offset, the model pads around the content with SAM's mean, and the evaluation crops the content back out."""

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules import FolderDataModule
from samadapt.evaluation.protocol import eval_samples
from samadapt.sam.preprocess import content_boxes, fill_padding, letterbox_offset
from samadapt.training.cli import SamAdaptCLI
from tests.commands.test_cli import configs, tiny_overrides

S = 80
SIZES = {"tall": (40, 24), "wide": (24, 40), "odd": (37, 23)}  # scale 2 for the first two: exact round trips


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for name, (h, w) in SIZES.items():
            image = rng.integers(1, 255, (h, w, 3), dtype=np.uint8)  # no black pixel: padding is told apart
            Image.fromarray(image).save(root / split / "images" / f"{name}.png")
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4: h // 2 + 3, w // 3: w - 2] = 255
            Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")
    return root


def _batches(root, letterbox: str, train: bool = False, **options) -> dict:
    dm = FolderDataModule(root=str(root), image_size=S, box_jitter=0.0, batch_size=3, eval_batch_size=3,
                          num_bg_points=1, letterbox=letterbox, **options)
    dm.setup("fit")
    if train:
        torch.manual_seed(0)
        return next(iter(dm.train_dataloader()))
    return next(iter(dm.val_dataloader()))


@pytest.mark.parametrize("train", [False, True])
def test_a_centred_sample_is_the_top_left_sample_moved_by_its_offset(root, train):
    top_left, centred = _batches(root, "top_left", train), _batches(root, "center", train)
    assert top_left["content_offset"].tolist() == [[0, 0]] * 3
    for i, (h, w) in enumerate(centred["content_hw"].tolist()):
        top, left = centred["content_offset"][i].tolist()
        assert (top, left) == letterbox_offset((h, w), S, "center") == ((S - h) // 2, (S - w) // 2)
        for key in ("image", "mask"):
            frame = centred[key][i]
            assert torch.equal(frame[:, top:top + h, left:left + w], top_left[key][i][:, :h, :w])
            assert int(frame.sum()) == int(frame[:, top:top + h, left:left + w].sum())  # zero around the content
        shift = torch.tensor([left, top], dtype=torch.float32)
        assert torch.equal(centred["points"][i], top_left["points"][i] + shift)
        assert torch.equal(centred["box"][i], top_left["box"][i] + shift.repeat(2))
    assert {tuple(o) for o in centred["content_offset"].tolist()} >= {(0, 16), (16, 0)}


def test_the_model_pads_around_the_centred_content_with_the_pixel_mean(root):
    batch = _batches(root, "center")
    mean = torch.tensor([123.675, 116.28, 103.53])
    boxes = content_boxes(batch, S, "center")
    assert torch.equal(boxes, torch.cat([batch["content_offset"], batch["content_hw"]], 1))
    filled = fill_padding(batch["image"].float(), boxes, mean)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        inside = torch.zeros(S, S, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        assert torch.equal(filled[i][:, inside], batch["image"][i][:, inside].float())
        assert torch.equal(filled[i][:, ~inside], mean[:, None].expand(3, int((~inside).sum())))
    # a batch without the offset key is placed by the model's letterbox
    no_offset = {k: v for k, v in batch.items() if k != "content_offset"}
    assert torch.equal(content_boxes(no_offset, S, "center"), boxes)


@pytest.mark.parametrize("resolution", ["original", "original_binary", "model"])
def test_a_perfect_prediction_round_trips_to_the_target(root, resolution):
    """Logits that are +-10 on the letterboxed target give back the original-size target (exact at scale 2)."""
    batch = _batches(root, "center")
    logits = (batch["mask"].float() * 20 - 10)  # (B, 1, S, S)
    samples = eval_samples(logits, batch, resolution)
    for i, sample in enumerate(samples):
        if batch["sample_id"][i] == "odd":
            continue  # 37 x 23 -> 80 x 50: nearest-neighbour letterboxing is not exactly invertible
        pred = sample.prediction(0.5, "probs")
        assert torch.equal(pred, sample.target)
        if resolution == "model":
            assert pred.shape == tuple(batch["content_hw"][i].tolist())
            assert int(sample.target.sum()) == int(batch["mask"][i].sum())  # nothing left in the padding
        else:
            assert pred.shape == tuple(batch["orig_size"][i].tolist())
            assert torch.equal(sample.target, batch["orig_mask"][i] == 1)
    top_left = eval_samples(_batches(root, "top_left")["mask"].float() * 20 - 10, _batches(root, "top_left"),
                            resolution)
    for ours, theirs in zip(samples, top_left, strict=True):  # the same numbers as the top-left frame
        assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.target, theirs.target)


def test_model_letterbox_reaches_the_data(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
            "--trainer.logger=false"]
    cli = SamAdaptCLI(args=[*args, "--model.letterbox=center"], run=False)
    assert cli.model.model.letterbox == "center" and cli.model.hparams.letterbox == "center"
    assert cli.datamodule.train_options.letterbox == cli.datamodule.eval_options.letterbox == "center"
    default = SamAdaptCLI(args=args, run=False)
    assert default.model.model.letterbox == default.datamodule.eval_options.letterbox == "top_left"
