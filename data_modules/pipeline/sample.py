"""The sample every dataset yields, and (stacked by `collate_prompted`) what the model reads."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import torch


class Sample(TypedDict):
    """One prompted-segmentation sample in the letterboxed S x S frame (content at `content_offset`, the rest zero
    padding: at the top left by default, centred with `letterbox: center`)."""

    image: torch.Tensor  # (3, S, S) uint8; the model normalises it, then zeroes the padding
    mask: torch.Tensor  # (1, S, S) uint8 {0, 1}
    points: torch.Tensor  # (K, 2) float32 x, y in the frame
    point_labels: torch.Tensor  # (K,) long: 1 foreground, 0 background, -1 "not a point" (empty object)
    box: torch.Tensor  # (4,) float32 x0, y0, x1, y1 in the frame
    text: str  # "" when the sample has none
    sample_id: str  # stable across runs: it seeds the evaluation prompts
    orig_size: torch.Tensor  # (2,) long: (H, W) of the original image
    content_hw: torch.Tensor  # (2,) long: (h, w) of the resized image inside the frame; the rest is padding
    content_offset: torch.Tensor  # (2,) long: (top, left) of that image in the frame; (0, 0) for top_left
    class_id: int  # -1 when the sample has no class
    image_key: str | None  # image, size, content size, placement, flip; None when random pixels make reads differ
    ignore: NotRequired[torch.Tensor]  # (1, S, S) bool: pixels left out of loss and metrics (semantic datasets)
    orig_mask: NotRequired[torch.Tensor]  # evaluation only: (H, W) uint8 target, 1 object, 0 background, 255 ignore
