"""A synthetic task where one point is ambiguous and the task says what it means: "the outer shape".

Every image holds a large shape with a smaller shape of another colour inside it (plus 0-2 loose shapes);
the target is the large shape, filled. A click near its middle lands on the small shape, where a promptable
model, asked nothing more, segments the small one. Written in the folder layout FolderDataModule reads:
  <root>/<split>/images/<stem>.jpg, <root>/<split>/masks/<stem>.png (0/255)
Prompt it with `point_strategy: interior` so the point falls near the middle of the target.

With `every_shape=True` the same kind of scenes give one sample per shape (the whole, the part inside it and
each loose shape): the demo's tiny SAM pretrains on them with box prompts, so that, like SAM pretrained on
SA-1B's parts and wholes, it can draw a whole that contains a part, while a point on the part still means the part.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.synthetic.referring import COLORS, SHAPES, _background, _polygon, polygon_to_mask


def _paint(img: np.ndarray, mask: np.ndarray, color: str, rng: np.random.Generator) -> None:
    rgb = np.array(COLORS[color], dtype=np.float32) + rng.uniform(-12, 12, 3)
    img[mask.astype(bool)] = rgb + rng.normal(0, 3, (int(mask.sum()), 3))


def _inside_with_margin(inner: np.ndarray, outer: np.ndarray) -> bool:
    """inner, grown by one pixel, lies within outer: the outer shape shows all around the inner one."""
    grown = inner.copy()
    grown[1:] |= inner[:-1]
    grown[:-1] |= inner[1:]
    grown[:, 1:] |= inner[:, :-1]
    grown[:, :-1] |= inner[:, 1:]
    return bool(inner.any()) and not (grown & ~outer).any()


def draw_nested_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(image HxWx3 uint8, shapes): a shape inside a larger one, plus loose shapes elsewhere.

    shapes (HxW bool each): [the larger shape filled (the task's target), the shape inside it, *loose shapes].
    """
    img = _background(rng, h, w)
    colors = list(COLORS)
    while True:
        size = rng.uniform(0.5, 0.8) * min(h, w)
        r = size / 2
        cx, cy = rng.uniform(r + 2, w - r - 3), rng.uniform(r + 2, h - r - 3)
        outer_shape, inner_shape = SHAPES[int(rng.integers(3))], SHAPES[int(rng.integers(3))]
        outer = polygon_to_mask(_polygon(outer_shape, cx, cy, size), h, w).astype(bool)
        ys, xs = np.nonzero(outer)
        for ratio in (rng.uniform(0.45, 0.65), 0.45, 0.35):  # shrink the inner shape until it fits
            inner = polygon_to_mask(_polygon(inner_shape, xs.mean(), ys.mean(), size * ratio), h, w).astype(bool)
            if _inside_with_margin(inner, outer):
                break
        else:
            continue
        break
    outer_color, inner_color = rng.choice(len(colors), 2, replace=False)
    _paint(img, outer, colors[outer_color], rng)
    _paint(img, inner, colors[inner_color], rng)
    shapes = [outer, inner]
    taken = outer.copy()
    for _ in range(int(rng.integers(0, 3))):  # loose shapes elsewhere, so "the biggest thing" is not the rule
        s = rng.uniform(0.12, 0.25) * min(h, w)
        loose = polygon_to_mask(_polygon(SHAPES[int(rng.integers(3))], rng.uniform(s, w - s), rng.uniform(s, h - s),
                                         s), h, w).astype(bool)
        grown = np.zeros_like(taken)
        ys, xs = np.nonzero(taken)
        grown[max(0, ys.min() - 3): ys.max() + 4, max(0, xs.min() - 3): xs.max() + 4] = True
        if loose.any() and not (loose & grown).any():
            _paint(img, loose, colors[int(rng.integers(len(colors)))], rng)
            taken |= loose
            shapes.append(loose)
    return np.clip(img, 0, 255).astype(np.uint8), shapes


def write_nested_shapes(
    root: str | Path,
    splits: tuple[tuple[str, int], ...] = (("train", 600), ("val", 40), ("test", 100)),
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    every_shape: bool = False,
) -> Path:
    """Write every split under a temporary folder, then move it to `root` in one step (never half-written).

    every_shape: one sample per shape of each scene (stems <split>_<i>_<k>, k = 0 for the whole) instead of one
    sample per scene whose target is the whole.
    """
    root = Path(root)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, count in splits:
        (tmp / split / "images").mkdir(parents=True)
        (tmp / split / "masks").mkdir(parents=True)
        for i in range(count):
            img, shapes = draw_nested_scene(rng, height, width)
            stem = f"{split}_{i:04d}"
            samples = [(f"{stem}_{k}", mask) for k, mask in enumerate(shapes)] if every_shape else [(stem, shapes[0])]
            for stem, mask in samples:
                Image.fromarray(img).save(tmp / split / "images" / f"{stem}.jpg", quality=95, subsampling=0)
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / split / "masks" / f"{stem}.png")
    os.replace(tmp, root)
    return root
