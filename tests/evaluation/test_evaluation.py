"""The evaluation protocol: original resolution, threshold semantics, metric families, the test report."""

import csv
import json

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from data_modules import Ade20kDataModule, Cod10kDataModule, RefCocoDataModule
from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.transforms import letterbox, letterbox_shape, original_target
from samadapt.errors import SamAdaptError
from samadapt.evaluation.protocol import EvalMetrics, binarize, check_threshold, eval_samples, metrics_for
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE


def fake_batch(orig: np.ndarray, ignore: np.ndarray | None = None, size: int = 64, placement: str = "top_left"):
    """A one-sample eval batch of an (H, W) target, plus logits that predict exactly its letterboxed mask."""
    h, w = orig.shape
    lb = letterbox(np.zeros((h, w, 3), np.uint8), orig, size, letterbox=placement)
    sample = {"image": lb.image, "mask": lb.mask, "points": torch.zeros(0, 2), "point_labels": torch.zeros(0).long(),
              "box": torch.zeros(4), "text": "", "sample_id": "s0", "orig_size": torch.tensor([h, w]),
              "content_hw": torch.tensor(lb.content_hw), "content_offset": torch.tensor(lb.content_offset),
              "orig_mask": original_target(orig, ignore), "class_id": 3}
    logits = (lb.mask.float() * 20 - 10)[None]  # +10 inside the letterboxed mask, -10 elsewhere (and in the padding)
    return collate_prompted([sample]), logits


def test_original_resolution_unletterboxes_and_uses_the_original_target():
    orig = np.zeros((30, 50), bool)
    orig[5:20, 10:40] = True
    ignore = np.zeros_like(orig)
    ignore[0, :] = True
    batch, logits = fake_batch(orig, ignore)
    (at_orig,) = eval_samples(logits, batch, "original")
    assert at_orig.logits.shape == (30, 50) and torch.equal(at_orig.target, torch.from_numpy(orig & ~ignore))
    assert at_orig.ignore is not None and at_orig.ignore[0].all() and at_orig.class_id == 3
    agree = (binarize(at_orig.logits, 0.5, "probs") == at_orig.target).float().mean().item()
    assert agree > 0.97  # only the resized edges may differ
    (at_model,) = eval_samples(logits, batch, "model")
    assert at_model.logits.shape == letterbox_shape(30, 50, 64) == (38, 64)  # the padding is cropped away
    del batch["orig_mask"]
    with pytest.raises(SamAdaptError, match="orig_mask"):
        eval_samples(logits, batch, "original")


def test_original_binary_is_the_released_dit_protocol():
    """Binarise at the model's resolution, crop, resize the 0/1 mask bilinearly, keep > 0 (DIT's test.py and
    utils.mask_processing): written out here with numpy and OpenCV on the same logits."""
    orig = np.zeros((30, 50), bool)
    orig[5:20, 10:40] = True
    batch, logits = fake_batch(orig, np.zeros_like(orig))
    logits = logits + torch.linspace(-3, 3, 64)[None, None]  # soft edges: the protocols differ there
    (sample,) = eval_samples(logits, batch, "original_binary")
    nh, nw = letterbox_shape(30, 50, 64)
    binary = (torch.sigmoid(logits[0, 0, :nh, :nw]) > 0.35).numpy().astype(np.float32)
    expected = cv2.resize(binary, (50, 30), interpolation=cv2.INTER_LINEAR) > 0
    np.testing.assert_array_equal(sample.prediction(0.35, "probs").numpy(), expected)
    (bilinear,) = eval_samples(logits, batch, "original")
    grown = sample.prediction(0.35, "probs") & ~bilinear.prediction(0.35, "probs")
    assert grown.any() and not (bilinear.prediction(0.35, "probs") & ~sample.prediction(0.35, "probs")).any()
    metrics = EvalMetrics("referring", 0.35, "probs")
    metrics.update([sample])
    assert 0 < metrics.compute()["oIoU"] <= 1
    with pytest.raises(SamAdaptError, match="SOD"):
        EvalMetrics("sod", 0.35, "probs").update([sample])


@pytest.mark.parametrize("resolution", ["original", "original_binary", "model"])
def test_a_centred_frame_is_cropped_where_its_content_is(resolution):
    """letterbox: center (the released DIT code's placement): the same numbers as the top-left frame."""
    orig = np.zeros((30, 50), bool)
    orig[5:20, 10:40] = True
    ignore = np.zeros_like(orig)
    ignore[0, :] = True
    centred_batch, centred_logits = fake_batch(orig, ignore, placement="center")
    assert centred_batch["content_offset"].tolist() == [[13, 0]]  # 38 x 64 content in the 64 x 64 frame
    (centred,) = eval_samples(centred_logits, centred_batch, resolution)
    (top_left,) = eval_samples(*reversed(fake_batch(orig, ignore)), resolution)
    assert torch.equal(centred.logits, top_left.logits) and torch.equal(centred.target, top_left.target)
    assert torch.equal(*[torch.zeros(0) if s.ignore is None else s.ignore for s in (centred, top_left)])


def test_threshold_on_probs_or_logits():
    logits = torch.tensor([-1.0, -0.1, 0.0, 0.1, 2.0])
    assert torch.equal(binarize(logits, 0.5, "probs"), binarize(logits, 0.0, "logits"))
    assert binarize(logits, 0.35, "probs").tolist() == (logits.sigmoid() > 0.35).tolist()
    with pytest.raises(SamAdaptError, match="threshold_on: logits"):
        check_threshold(0.0, "probs")
    with pytest.raises(SamAdaptError):
        EvalMetrics("referring", 0.5, "logit")


def test_metric_family_follows_the_dataset(tiny_layouts, shapes_root):
    assert metrics_for(Cod10kDataModule(tiny_layouts["data_modules.Cod10kDataModule"])) == "sod"
    assert metrics_for(Ade20kDataModule(tiny_layouts["data_modules.Ade20kDataModule"])) == "semantic"
    assert metrics_for(RefCocoDataModule(shapes_root, dataset="shapes")) == "referring"
    assert metrics_for(None) == "referring"


def tiny_module(checkpoint, **kw):
    return SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE,
                          eval_prompts=kw.pop("eval_prompts", "points"), **kw)


def quiet_trainer(root, **kw):
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(root), **kw)


def test_test_run_logs_and_reports_every_split(tiny_sam_checkpoint, shapes_root, tmp_path):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, eval_batch_size=3,
                           test_splits=["testA", "testB"], max_eval_samples=5)
    trainer = quiet_trainer(tmp_path)
    trainer.test(tiny_module(tiny_sam_checkpoint, threshold=0.35), dm)
    logged = trainer.callback_metrics
    for key in ("test/testA/oIoU", "test/testB/P@0.9", "test/oIoU", "test/mIoU"):
        assert key in logged
    report = json.loads((tmp_path / "test_metrics.json").read_text())
    rows = {row["split"]: row for row in report["results"]}
    assert list(rows) == ["testA", "testB", "all"]
    assert rows["testA"]["oIoU"] == pytest.approx(logged["test/testA/oIoU"].item())
    assert rows["all"]["mIoU"] == pytest.approx(logged["test/mIoU"].item())
    assert report["settings"] == {"metrics": "referring", "eval_resolution": "original", "threshold": 0.35,
                                  "threshold_on": "probs", "strict_pk": True}
    with open(tmp_path / "test_per_sample.csv") as f:
        per_sample = list(csv.DictReader(f))
    assert len(per_sample) == 10 and {r["split"] for r in per_sample} == {"testA", "testB"}
    ious = [float(r["IoU"]) for r in per_sample if r["split"] == "testA"]
    assert np.mean(ious) == pytest.approx(rows["testA"]["mIoU"], abs=1e-6)
    assert all("/" not in r["sample_id"] and r["sample_id"] for r in per_sample)
    table = (tmp_path / "test_metrics.md").read_text()
    assert "| split | prompts | oIoU |" in table and "| testB | points |" in table


def test_cod_runs_report_sod_measures_and_semantic_runs_class_iou(tiny_sam_checkpoint, tiny_layouts, tmp_path):
    cod = Cod10kDataModule(tiny_layouts["data_modules.Cod10kDataModule"], image_size=TEST_SIZE, eval_batch_size=2)
    trainer = quiet_trainer(tmp_path / "cod")
    module = tiny_module(tiny_sam_checkpoint)
    trainer.test(module, cod)
    for key in ("test/MAE", "test/Sm", "test/wFm", "test/meanEm", "test/maxEm", "test/adpEm", "test/maxFm",
                "test/oIoU"):
        assert key in trainer.callback_metrics
    ade = Ade20kDataModule(tiny_layouts["data_modules.Ade20kDataModule"], image_size=TEST_SIZE, eval_batch_size=4)
    trainer = quiet_trainer(tmp_path / "ade")
    trainer.test(module, ade)  # the same module on another dataset switches to that dataset's metrics
    assert {"test/classIoU", "test/objectIoU"} <= set(trainer.callback_metrics)
    assert "test/Sm" not in trainer.callback_metrics
    report = json.loads((tmp_path / "ade" / "test_metrics.json").read_text())
    per_class = report["details"]["classIoU_per_class"]["val/points"]
    assert per_class and report["results"][0]["classIoU"] == pytest.approx(np.mean(list(per_class.values())))


def test_resolution_auto_is_model_while_fitting_and_original_otherwise(tiny_sam_checkpoint, shapes_root, tmp_path):
    module = tiny_module(tiny_sam_checkpoint)
    assert module.eval_resolution() == "original"  # no trainer: a standalone evaluation
    assert tiny_module(tiny_sam_checkpoint, eval_resolution="model").eval_resolution() == "model"
    seen = []

    class Spy(L.Callback):
        def on_validation_batch_end(self, trainer, pl_module, *args):
            seen.append(pl_module.eval_resolution())

    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=2, eval_batch_size=2,
                           max_eval_samples=2, test_splits=["testA"])
    trainer = quiet_trainer(tmp_path, max_steps=1, val_check_interval=1, limit_val_batches=1, num_sanity_val_steps=0,
                           callbacks=[Spy()])
    trainer.fit(module, dm)
    trainer.validate(module, dm)
    assert seen == ["model", "original"] and "val/oIoU" in trainer.callback_metrics


def test_predict_masks_follow_the_threshold_semantics(tiny_sam_checkpoint, shapes_root):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, eval_batch_size=2,
                           max_eval_samples=2, test_splits=["testA"])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    on_logits = tiny_module(tiny_sam_checkpoint, threshold=0.0, threshold_on="logits").eval()
    on_probs = tiny_module(tiny_sam_checkpoint, threshold=0.5).eval()
    with torch.no_grad():
        a, b = on_logits.predict_step(batch, 0), on_probs.predict_step(batch, 0)
    masks_a, masks_b = ([row["mask_pixels"] for row in rows] for rows in (a, b))
    assert all((x == y).all() for x, y in zip(masks_a, masks_b, strict=True))
    assert 0 < np.mean([m.mean() for m in masks_b]) < 1
