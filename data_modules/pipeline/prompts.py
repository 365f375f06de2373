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


def _bounds(m: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the smallest window holding every True pixel of HxW bool `m` (ends exclusive); None if
    there is none."""
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def sample_points(
    mask: torch.Tensor | np.ndarray, k: int = 1, generator: Generator = None,
    bounds: tuple[int, int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k foreground points drawn uniformly (with replacement) among mask pixels.

    Returns points (k, 2) float (x, y) and labels (k,) long: 1 for foreground, -1 if the mask is empty.
    `bounds`: the mask's `_bounds`, when the caller has them already.
    """
    m = _as_bool_array(mask)
    h, w = m.shape
    bounds = _bounds(m) if bounds is None else bounds
    if bounds is None:
        centre = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]]).repeat(k, 1)
        return centre, torch.full((k,), -1, dtype=torch.long)
    # Enumerating the pixels inside the bounds lists them in the same row-major order as over the whole mask
    # (so the same draws give the same points), in a fraction of the time.
    y0, y1, x0, x1 = bounds
    flat = np.flatnonzero(m[y0:y1, x0:x1])
    picked = flat[_randint(generator, len(flat), k).numpy()]
    points = np.stack([picked % (x1 - x0) + x0, picked // (x1 - x0) + y0], axis=1).astype(np.float32)
    return torch.from_numpy(points), torch.ones(k, dtype=torch.long)


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
    return _box(_bounds(m), m.shape)


def _box(bounds: tuple[int, int, int, int] | None, hw: tuple[int, int]) -> torch.Tensor:
    if bounds is None:
        return torch.tensor([0.0, 0.0, hw[1] - 1.0, hw[0] - 1.0])
    y0, y1, x0, x1 = bounds
    return torch.tensor([x0, y0, x1 - 1, y1 - 1], dtype=torch.float32)


def jitter_box(
    box: torch.Tensor, jitter: float, bounds_hw: tuple[int, int], generator: Generator = None,
    origin: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Move each side by up to `jitter * side_length`, clipped to the image area [0, W-1] x [0, H-1], or to the
    H x W area whose top-left pixel is `origin` (top, left)."""
    if jitter <= 0:
        return box.clone()
    x0, y0, x1, y1 = box.tolist()
    bw, bh = x1 - x0 + 1.0, y1 - y0 + 1.0
    d = (_uniform(generator, 4) * jitter).tolist()  # four floats: plain Python beats torch's per-op cost here
    h, w = bounds_hw
    top, left = float(origin[0]), float(origin[1])
    right, bottom = left + w - 1.0, top + h - 1.0
    xs = [min(max(x0 + d[0] * bw, left), right), min(max(x1 + d[2] * bw, left), right)]
    ys = [min(max(y0 + d[1] * bh, top), bottom), min(max(y1 + d[3] * bh, top), bottom)]
    # keep x0 <= x1, y0 <= y1 even when a side crossed the opposite one
    return torch.tensor([min(xs), min(ys), max(xs), max(ys)], dtype=torch.float32)


def sample_prompts(
    mask: torch.Tensor | np.ndarray,
    num_points: int = 1,
    box_jitter: float = 0.0,
    generator: Generator = None,
    bounds_hw: tuple[int, int] | None = None,
    num_bg_points: int = 0,
    strategy: PointStrategy = "uniform",
    valid: torch.Tensor | None = None,
    bounds_origin: tuple[int, int] = (0, 0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points, point labels and box for one mask; the jittered box stays inside the `bounds_hw` area whose top-left
    pixel is `bounds_origin` (default: the whole mask).

    The first `num_points` points are foreground (uniform or interior), then `num_bg_points` background
    points drawn from `valid` minus the mask (default: everywhere outside the mask).
    """
    mask = _as_bool_array(mask)
    bounds = _bounds(mask)
    if strategy == "interior":
        points, labels = sample_points(interior_region(mask), num_points, generator)
    else:
        points, labels = sample_points(mask, num_points, generator, bounds)
    if num_bg_points > 0:
        bg_points, bg_labels = sample_background_points(mask, num_bg_points, generator, valid)
        points, labels = torch.cat([points, bg_points]), torch.cat([labels, bg_labels])
    box = _box(bounds, mask.shape)
    if box_jitter > 0 and bool((labels == 1).any()):
        hw = bounds_hw if bounds_hw is not None else mask.shape
        box = jitter_box(box, box_jitter, hw, generator, bounds_origin)
    return points, labels, box


def letterboxed_prompts(
    letterboxed_mask: torch.Tensor,
    original_mask: np.ndarray,
    scale: float,
    content_box: tuple[int, int, int, int],
    num_points: int,
    box_jitter: float,
    generator: Generator,
    num_bg_points: int = 0,
    strategy: PointStrategy = "uniform",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts in the letterboxed frame (HxW mask at model size, content at `content_box` = (top, left, h, w)).

    An object that vanished when downscaled is prompted from its original mask, mapped by `scale` and the offset.
    """
    top, left, h, w = content_box
    letterboxed_mask = _as_bool_array(letterboxed_mask)  # once, not in every helper below
    if original_mask.any() and not letterboxed_mask.any():
        points, labels, box = sample_prompts(original_mask, num_points, 0.0, generator, None, num_bg_points,
                                             strategy)
        shift = torch.tensor([left, top], dtype=torch.float32)
        return points * scale + shift, labels, box * scale + shift.repeat(2)
    return sample_prompts(letterboxed_mask, num_points, box_jitter, generator, (h, w), num_bg_points, strategy,
                          valid, (top, left))
