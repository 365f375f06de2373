"""Batch prompted-segmentation samples (the `Sample` of pipeline/sample.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

from data_modules.pipeline.sample import Sample


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, except that inside a DataLoader worker default_collate stacks straight into shared memory,
    so handing the batch to the main process copies nothing more (the images and masks are most of the bytes)."""
    return default_collate(tensors)


def collate_prompted(samples: list[Sample]) -> dict[str, Any]:
    """Stack tensors ("orig_size", "content_hw" and "content_offset" to (B, 2) long); pad points to the largest K
    with (0, 0) and label -1 (SAM's "not a point"); "text", "sample_id" and "image_key" become lists.

    Optional keys: "class_id" (int, -1 when a sample has none) and "ignore" ((1,S,S) bool, all False when a
    sample has none) are batched when any sample carries them; "orig_mask" (evaluation samples: the target at
    the original size, (H, W) uint8, 255 = ignore) stays a list.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    b = len(samples)
    k_max = max(int(s["points"].shape[0]) for s in samples)
    points = torch.zeros(b, k_max, 2, dtype=torch.float32)
    labels = torch.full((b, k_max), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        k = int(s["points"].shape[0])
        points[i, :k] = s["points"]
        labels[i, :k] = s["point_labels"]
    batch = {
        "image": _stack([s["image"] for s in samples]),
        "mask": _stack([s["mask"] for s in samples]),
        "points": points,
        "point_labels": labels,
        "box": torch.stack([s["box"] for s in samples]),
        "text": [s["text"] for s in samples],
        "sample_id": [s["sample_id"] for s in samples],
        "orig_size": torch.stack([s["orig_size"] for s in samples]),
    }
    if all("content_hw" in s for s in samples):  # samples built by hand may lack it: derived from orig_size then
        batch["content_hw"] = torch.stack([s["content_hw"] for s in samples])
    if all("content_offset" in s for s in samples):  # absent: content at the top left (or the model's placement)
        batch["content_offset"] = torch.stack([s["content_offset"] for s in samples])
    if any("image_key" in s for s in samples):  # None where the pixels are random (nothing to cache)
        batch["image_key"] = [s.get("image_key") for s in samples]
    if any("class_id" in s for s in samples):
        batch["class_id"] = torch.tensor([int(s.get("class_id", -1)) for s in samples], dtype=torch.long)
    if any("orig_mask" in s for s in samples):  # (H, W) uint8 of each sample's own size: a list, not stacked
        batch["orig_mask"] = [s.get("orig_mask") for s in samples]
    if any("ignore" in s for s in samples):
        blank = torch.zeros_like(samples[0]["mask"], dtype=torch.bool)
        batch["ignore"] = _stack([s.get("ignore", blank) for s in samples])
    return batch
