"""Prompt options (background points, interior points), deterministic evaluation prompts, letterbox undo, collate."""

import numpy as np
import pytest
import torch

from data_modules import FolderDataModule
from data_modules.pipeline.augment import PhotometricAugment
from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.prompts import interior_region, sample_prompts
from data_modules.pipeline.transforms import letterbox, unletterbox
from samadapt.errors import SamAdaptError
from tests.helpers.layouts import write_folder


def _disk(h=40, w=60, r=12):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - 30) ** 2 + (yy - 20) ** 2) <= r * r


def test_background_points_are_outside_the_mask_and_inside_valid():
    m = _disk()
    valid = torch.zeros(40, 60, dtype=torch.bool)
    valid[:, :45] = True  # e.g. letterbox padding on the right
    pts, labels, _ = sample_prompts(m, 3, 0.0, torch.Generator().manual_seed(0), num_bg_points=20, valid=valid)
    assert labels.tolist() == [1] * 3 + [0] * 20
    for (x, y), lab in zip(pts.long().tolist(), labels.tolist(), strict=True):
        assert m[y, x] == (lab == 1) and (lab == 1 or valid[y, x])


def test_interior_points_stay_away_from_the_boundary():
    m = _disk(r=12)
    inner = interior_region(m).numpy()
    assert inner.any() and inner.sum() < m.sum() / 2 and not (inner & ~m).any()
    pts, labels, _ = sample_prompts(m, 50, 0.0, torch.Generator().manual_seed(1), strategy="interior")
    assert all(((x - 30) ** 2 + (y - 20) ** 2) <= 7**2 for x, y in pts.tolist())  # r/2 from the centre, +1 px


def test_eval_prompts_are_deterministic_per_sample_not_per_position(tmp_path):
    root = write_folder(tmp_path / "f", splits=(("train", 2), ("val", 4)))
    dm = FolderDataModule(str(root), image_size=64, num_points=3, num_bg_points=2)
    dm.setup("validate")
    full = {dm.val_set[i]["sample_id"]: dm.val_set[i] for i in range(4)}
    again = FolderDataModule(str(root), image_size=64, num_points=3, num_bg_points=2, max_eval_samples=2)
    again.setup("validate")
    for i in range(2):
        s = again.val_set[i]
        first = full[s["sample_id"]]
        assert torch.equal(s["points"], first["points"]) and torch.equal(s["box"], first["box"])


def test_training_draws_its_point_count_from_train_num_points_and_evaluation_keeps_num_points(tmp_path):
    root = write_folder(tmp_path / "f", splits=(("train", 4), ("val", 4)))
    dm = FolderDataModule(str(root), image_size=64, num_points=3, train_num_points=[1, 3])
    dm.setup("fit")
    counts = [int((dm.train_set[i % 4]["point_labels"] == 1).sum()) for i in range(40)]
    assert set(counts) == {1, 3}  # both drawn, nothing else
    assert {int((dm.val_set[i]["point_labels"] == 1).sum()) for i in range(4)} == {3}
    samples = [dm.train_set[i % 4] for i in range(8)]
    labels = collate_prompted(samples)["point_labels"]  # a batch of mixed counts: the short ones padded with -1
    counts = [int((s["point_labels"] == 1).sum()) for s in samples]
    assert labels.shape[1] == max(counts) and [int((row == 1).sum()) for row in labels] == counts
    with pytest.raises(SamAdaptError, match=r"train_num_points\[1\]=0 must be a whole number >= 1"):
        FolderDataModule(str(root), image_size=64, train_num_points=[2, 0])


def test_unletterbox_restores_the_original_frame():
    mask = np.zeros((30, 80), np.uint8)
    mask[5:20, 10:50] = 1
    lb = letterbox(np.zeros((30, 80, 3), np.uint8), mask, 160)  # scale 2: exact
    restored = unletterbox(lb.mask, (30, 80), mode="nearest")
    assert restored.shape == (1, 30, 80) and torch.equal(restored[0].bool(), torch.from_numpy(mask.astype(bool)))


def test_photometric_augment_keeps_shape_and_changes_pixels():
    img = np.full((20, 20, 3), 120, np.uint8)
    out = PhotometricAugment(color_jitter=True, blur=True, jitter_p=1.0, blur_p=1.0)(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_collate_batches_class_id_and_ignore_with_defaults():
    def sample(extra):
        return {"image": torch.zeros(3, 4, 4), "mask": torch.zeros(1, 4, 4), "points": torch.ones(1, 2),
                "point_labels": torch.ones(1, dtype=torch.long), "box": torch.zeros(4), "text": "", "sample_id": "a",
                "orig_size": torch.tensor([4, 4]), **extra}
    ignore = torch.ones(1, 4, 4, dtype=torch.bool)
    batch = collate_prompted([sample({"class_id": 3, "ignore": ignore}), sample({})])
    assert batch["class_id"].tolist() == [3, -1]
    assert batch["ignore"].shape == (2, 1, 4, 4) and batch["ignore"][0].all() and not batch["ignore"][1].any()
    assert "class_id" not in collate_prompted([sample({})])
