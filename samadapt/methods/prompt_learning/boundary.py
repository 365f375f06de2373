"""Boundary points of binary masks: the outer contour, resampled to a fixed count by arc length, and matched.

Coordinates are (x, y) in [0, 1] of the mask's frame (pixel centres), so masks of different resolutions
(SAM's low-res logits, the full-size ground truth) share one frame.
"""

import cv2
import numpy as np
import torch


def resample_closed(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points evenly spaced by arc length along the closed polyline `points` (M,2), linearly interpolated."""
    closed = np.concatenate([points, points[:1]], axis=0)
    steps = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    length = np.concatenate([[0.0], np.cumsum(steps)])
    if length[-1] <= 0:  # a single pixel: every point is that pixel
        return np.repeat(points[:1], count, axis=0).astype(np.float32)
    at = np.arange(count) * (length[-1] / count)
    x = np.interp(at, length, closed[:, 0])
    y = np.interp(at, length, closed[:, 1])
    return np.stack([x, y], axis=1).astype(np.float32)


def boundary_points(mask: np.ndarray, count: int) -> np.ndarray | None:
    """`count` points (count,2) along the outer contour of the largest region of a HxW bool mask; None if empty."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    points = resample_closed(largest[:, 0, :].astype(np.float64), count)
    h, w = mask.shape
    return (points + 0.5) / np.array([w, h], dtype=np.float32)


def predicted_boundary(logits: torch.Tensor, count: int) -> np.ndarray:
    """Boundary points of (logits > 0) (HxW); an empty prediction gives its highest-scoring pixel `count` times."""
    positive = (logits > 0).cpu().numpy()
    if not positive.any():
        positive = (logits >= logits.max()).cpu().numpy()
    points = boundary_points(positive, count)
    assert points is not None  # the mask holds at least one pixel
    return points


def match_cyclic(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`target` (K,2) re-ordered (cyclic shift, either direction) to lie closest to `predicted` (K,2) point by point."""
    k = target.shape[0]
    order = (torch.arange(k)[None, :] + torch.arange(k)[:, None]) % k  # row s: the shift by s
    candidates = torch.cat([target[order], target.flip(0)[order]])  # (2K, K, 2)
    cost = (candidates - predicted[None]).norm(dim=-1).mean(dim=-1)
    return candidates[int(cost.argmin())]
