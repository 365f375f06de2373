"""Prompt sampling from a binary mask: foreground points and a (jittered) tight box.

Coordinates are (x, y) pixel indices in the mask's frame, the convention SAM's prompt encoder expects
(it adds 0.5 itself to reach pixel centres). Boxes are x0, y0, x1, y1 with inclusive max indices.

Empty masks (datasets skip them, this is only a fallback): every point is the image centre with
label -1, which SAM treats as "not a point" (padding), and the box is the whole image, so the prompt
carries no false information about where an object is.
"""

from __future__ import annotations

import numpy as np
import torch

Generator = torch.Generator | np.random.Generator | None


def _as_bool_tensor(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    m = m.squeeze()
    if m.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {tuple(mask.shape)}")
    return m > 0.5 if m.is_floating_point() else m != 0


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
    m = _as_bool_tensor(mask)
    ys, xs = torch.nonzero(m, as_tuple=True)
    if len(xs) == 0:
        h, w = m.shape
        centre = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]]).repeat(k, 1)
        return centre, torch.full((k,), -1, dtype=torch.long)
    idx = _randint(generator, len(xs), k)
    points = torch.stack([xs[idx], ys[idx]], dim=1).float()
    return points, torch.ones(k, dtype=torch.long)


def mask_to_box(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tight box (4,) x0, y0, x1, y1 (inclusive) of the mask; the whole image if the mask is empty."""
    m = _as_bool_tensor(mask)
    h, w = m.shape
    ys, xs = torch.nonzero(m, as_tuple=True)
    if len(xs) == 0:
        return torch.tensor([0.0, 0.0, w - 1.0, h - 1.0])
    return torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points, point labels and box for one mask; `bounds_hw` limits the jittered box (default: mask size)."""
    points, labels = sample_points(mask, num_points, generator)
    box = mask_to_box(mask)
    if box_jitter > 0 and bool((labels == 1).any()):
        hw = bounds_hw if bounds_hw is not None else tuple(_as_bool_tensor(mask).shape)
        box = jitter_box(box, box_jitter, hw, generator)
    return points, labels, box
