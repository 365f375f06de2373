"""Prompt sampling from a binary mask: foreground points and a (jittered) tight box.

Coordinates are (x, y) pixel indices in the mask's frame, the convention SAM's prompt encoder expects
(it adds 0.5 itself to reach pixel centres). Boxes are x0, y0, x1, y1 with inclusive max indices.

Empty masks (datasets skip them, this is only a fallback): every point is the image centre with
label -1, which SAM treats as "not a point" (padding), and the box is the whole image, so the prompt
carries no false information about where an object is.

Options: background points (label 0) drawn outside the mask, and "interior" foreground points drawn
away from the boundary (pixels whose distance to the background is at least half the largest such
distance), which avoids ambiguous clicks on thin borders.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

PointStrategy = Literal["uniform", "interior"]
Generator = torch.Generator | np.random.Generator | None


def _as_bool_array(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """HxW bool numpy array. Prompt sampling works in numpy: torch's per-call overhead dominates at this size."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.squeeze()
    if m.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {tuple(mask.shape)}")
    if m.dtype == bool:
        return m
    return m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0


def _randint(gen: Generator, high: int, n: int) -> torch.Tensor:
    if isinstance(gen, np.random.Generator):
        return torch.from_numpy(gen.integers(0, high, size=n)).long()
    return torch.randint(0, high, (n,), generator=gen)


def _uniform(gen: Generator, n: int) -> torch.Tensor:
    """n floats uniform in [-1, 1)."""
    if isinstance(gen, np.random.Generator):
        return torch.from_numpy(gen.uniform(-1.0, 1.0, size=n)).float()
    return torch.rand(n, generator=gen) * 2.0 - 1.0


def sample_points(
    mask: torch.Tensor | np.ndarray, k: int = 1, generator: Generator = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """k foreground points drawn uniformly (with replacement) among mask pixels.

    Returns points (k, 2) float (x, y) and labels (k,) long: 1 for foreground, -1 if the mask is empty.
    """
    m = _as_bool_array(mask)
    h, w = m.shape
    flat = np.flatnonzero(m)  # row-major, as torch.nonzero
    if len(flat) == 0:
        centre = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]]).repeat(k, 1)
        return centre, torch.full((k,), -1, dtype=torch.long)
    picked = torch.from_numpy(flat)[_randint(generator, len(flat), k)]
    points = torch.stack([picked % w, picked // w], dim=1).float()
    return points, torch.ones(k, dtype=torch.long)


def interior_region(mask: torch.Tensor | np.ndarray, fraction: float = 0.5) -> torch.Tensor:
    """Pixels at least `fraction` of the largest inside distance away from the mask boundary (HxW bool)."""
    import cv2  # imported lazily: only this option needs it

    m = _as_bool_array(mask)
    m_np = np.pad(m.astype(np.uint8), 1)  # the image border counts as boundary
    dist = cv2.distanceTransform(m_np, cv2.DIST_L2, 3)[1:-1, 1:-1]
    if dist.max() <= 0:
        return torch.from_numpy(m)
    return torch.from_numpy(dist >= max(1.0, fraction * float(dist.max())))


def sample_background_points(
    mask: torch.Tensor | np.ndarray, k: int, generator: Generator = None, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """k background points (label 0) outside the mask and inside `valid` (e.g. not padding, not ignore)."""
    m = _as_bool_array(mask)
    outside = ~m if valid is None else (~m & _as_bool_array(valid))
    points, labels = sample_points(outside, k, generator)
    return points, torch.where(labels == 1, 0, labels)


def mask_to_box(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tight box (4,) x0, y0, x1, y1 (inclusive) of the mask; the whole image if the mask is empty."""
    m = _as_bool_array(mask)
    h, w = m.shape
    cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
    if len(cols) == 0:
        return torch.tensor([0.0, 0.0, w - 1.0, h - 1.0])
    return torch.tensor([cols[0], rows[0], cols[-1], rows[-1]], dtype=torch.float32)


def jitter_box(
    box: torch.Tensor, jitter: float, bounds_hw: tuple[int, int], generator: Generator = None
) -> torch.Tensor:
    """Move each side by up to `jitter * side_length`, clipped to the image area [0, W-1] x [0, H-1]."""
    if jitter <= 0:
        return box.clone()
    x0, y0, x1, y1 = box.tolist()
    bw, bh = x1 - x0 + 1.0, y1 - y0 + 1.0
    d = _uniform(generator, 4) * jitter
    out = torch.tensor([x0 + d[0] * bw, y0 + d[1] * bh, x1 + d[2] * bw, y1 + d[3] * bh])
    h, w = bounds_hw
    out[0::2] = out[0::2].clamp(0, w - 1)
    out[1::2] = out[1::2].clamp(0, h - 1)
    # keep x0 <= x1, y0 <= y1 even when a side crossed the opposite one
    lo = torch.minimum(out[:2], out[2:])
    hi = torch.maximum(out[:2], out[2:])
    return torch.cat([lo, hi])


def sample_prompts(
    mask: torch.Tensor | np.ndarray,
    num_points: int = 1,
    box_jitter: float = 0.0,
    generator: Generator = None,
    bounds_hw: tuple[int, int] | None = None,
    num_bg_points: int = 0,
    strategy: PointStrategy = "uniform",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points, point labels and box for one mask; `bounds_hw` limits the jittered box (default: mask size).

    The first `num_points` points are foreground (uniform or interior), then `num_bg_points` background
    points drawn from `valid` minus the mask (default: everywhere outside the mask).
    """
    mask = _as_bool_array(mask)
    region = interior_region(mask) if strategy == "interior" else mask
    points, labels = sample_points(region, num_points, generator)
    if num_bg_points > 0:
        bg_points, bg_labels = sample_background_points(mask, num_bg_points, generator, valid)
        points, labels = torch.cat([points, bg_points]), torch.cat([labels, bg_labels])
    box = mask_to_box(mask)
    if box_jitter > 0 and bool((labels == 1).any()):
        hw = bounds_hw if bounds_hw is not None else mask.shape
        box = jitter_box(box, box_jitter, hw, generator)
    return points, labels, box


def letterboxed_prompts(
    letterboxed_mask: torch.Tensor,
    original_mask: np.ndarray,
    scale: float,
    content_hw: tuple[int, int],
    num_points: int,
    box_jitter: float,
    generator: Generator,
    num_bg_points: int = 0,
    strategy: PointStrategy = "uniform",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts in the letterboxed frame (HxW mask at model size, content in its top-left `content_hw`).

    An object that vanished when downscaled is prompted from its original mask, mapped by `scale`.
    """
    letterboxed_mask = _as_bool_array(letterboxed_mask)  # once, not in every helper below
    if original_mask.any() and not letterboxed_mask.any():
        points, labels, box = sample_prompts(original_mask, num_points, 0.0, generator, None, num_bg_points,
                                             strategy)
        return points * scale, labels, box * scale
    return sample_prompts(letterboxed_mask, num_points, box_jitter, generator, content_hw, num_bg_points, strategy,
                          valid)
