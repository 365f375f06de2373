"""Prompt sampling, letterboxing and collation."""

import numpy as np
import pytest
import torch

from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.prompts import jitter_box, mask_to_box, sample_points, sample_prompts
from data_modules.pipeline.transforms import letterbox


def _mask():
    m = np.zeros((20, 30), np.uint8)
    m[5:9, 10:20] = 1
    return m


@pytest.mark.parametrize("make_gen", [lambda: torch.Generator().manual_seed(3), lambda: np.random.default_rng(3)])
def test_points_inside_mask_and_seeded(make_gen):
    m = _mask()
    pts, labels = sample_points(m, 50, make_gen())
    assert pts.shape == (50, 2) and labels.tolist() == [1] * 50
    assert all(m[y, x] == 1 for x, y in pts.long().tolist())
    assert torch.equal(pts, sample_points(torch.from_numpy(m), 50, make_gen())[0])
    assert len({tuple(p) for p in pts.tolist()}) > 10  # spread over the mask


def test_box_and_jitter():
    m = _mask()
    assert mask_to_box(m).tolist() == [10, 5, 19, 8]
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        x0, y0, x1, y1 = jitter_box(mask_to_box(m), 0.5, (20, 30), g).tolist()
        assert 0 <= x0 <= x1 <= 29 and 0 <= y0 <= y1 <= 19
        assert abs(x0 - 10) <= 5.0 + 1e-4 and abs(y1 - 8) <= 2.0 + 1e-4  # width 10, height 4
    assert torch.equal(sample_prompts(m, 1, 0.0, g)[2], mask_to_box(m))


def test_empty_mask_fallback():
    pts, labels, box = sample_prompts(np.zeros((10, 20)), 2, 0.3, np.random.default_rng(0))
    assert labels.tolist() == [-1, -1] and pts[0].tolist() == [9.5, 4.5]
    assert box.tolist() == [0, 0, 19, 9]


def test_letterbox_portrait():
    img = np.full((100, 50, 3), 200, np.uint8)
    m = np.ones((100, 50), np.uint8)
    lb = letterbox(img, m, 32)
    assert lb.scale == 0.32 and lb.content_hw == (32, 16)
    assert (lb.image[:, :, :16] == 200).all() and (lb.image[:, :, 16:] == 0).all()
    assert lb.mask[0, :, :16].all() and not lb.mask[0, :, 16:].any()


def _sample(k, sid):
    return {"image": torch.zeros(3, 8, 8), "mask": torch.zeros(1, 8, 8), "points": torch.ones(k, 2),
            "point_labels": torch.ones(k, dtype=torch.long), "box": torch.arange(4.0), "text": f"t{sid}",
            "sample_id": str(sid), "orig_size": torch.tensor([4, 5])}


def test_collate_pads_points_with_minus_one():
    b = collate_prompted([_sample(1, 0), _sample(3, 1)])
    assert b["image"].shape == (2, 3, 8, 8) and b["mask"].shape == (2, 1, 8, 8) and b["box"].shape == (2, 4)
    assert b["points"].shape == (2, 3, 2) and b["points"][0, 1:].eq(0).all() and b["points"][1].eq(1).all()
    assert b["point_labels"].tolist() == [[1, -1, -1], [1, 1, 1]] and b["point_labels"].dtype == torch.long
    assert b["text"] == ["t0", "t1"] and b["sample_id"] == ["0", "1"] and b["orig_size"].shape == (2, 2)


def test_points_are_the_row_major_draws_over_the_whole_mask():
    """Sampling inside the mask's bounds draws the same points as indexing every mask pixel in row-major order."""
    m = np.zeros((40, 50), bool)
    m[3:9, 30:45] = True  # two separate blobs: the bounds hold background too
    m[25:37, 4:12] = True
    pts, _ = sample_points(m, 64, torch.Generator().manual_seed(7))
    flat = np.flatnonzero(m)
    idx = torch.randint(0, len(flat), (64,), generator=torch.Generator().manual_seed(7)).numpy()
    expected = np.stack([flat[idx] % 50, flat[idx] // 50], 1)
    assert np.array_equal(pts.numpy(), expected.astype(np.float32))
