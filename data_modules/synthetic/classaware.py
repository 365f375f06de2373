"""A synthetic class-aware task: two shapes of different classes overlap, one click lies on the edge between them,
and only the class name says which of the two is meant.

Written in the Folder layout (data_modules/folder.py), one sample per (scene, class of the touching pair):
  {root}/{split}/images/{scene:05d}_{class}.jpg   the scene (the same picture for both samples of a scene)
  {root}/{split}/masks/{scene:05d}_{class}.png    the visible pixels of that class's shape (0/255)
  {root}/{split}/texts.json                       {stem: class name}
  {root}/{split}/points.json                      {stem: [[x, y]]}: the click, the same for both samples
Colours are drawn independently of the class, so only the shape tells the classes apart. The click sits exactly
between a pixel of one shape and a touching pixel of the other (x or y ends in .5): without the text a point-
prompted model can only guess which shape is meant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.synthetic.referring import COLORS, SHAPES, _background, _polygon, polygon_to_mask

SPLITS = ("train", "val", "test")
MIN_VISIBLE = 120  # pixels each shape must keep visible


def _paint(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], rng: np.random.Generator) -> None:
    shade = np.clip(np.array(color) + rng.normal(0, 8, 3), 0, 255)
    img[mask > 0] = shade


def _edge_click(top: np.ndarray, bottom: np.ndarray, rng: np.random.Generator) -> list[float] | None:
    """A point halfway between a pixel of `top` and a 4-neighbour pixel of `bottom` (x, y in pixel units)."""
    pairs = []
    for dy, dx in ((0, 1), (1, 0)):
        for a, b in ((top, bottom), (bottom, top)):
            h, w = a.shape
            touch = a[: h - dy, : w - dx].astype(bool) & b[dy:, dx:].astype(bool)
            ys, xs = np.nonzero(touch)
            pairs += [(x + dx / 2, y + dy / 2) for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
    if not pairs:
        return None
    x, y = pairs[int(rng.integers(len(pairs)))]
    return [float(x), float(y)]


def draw_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, np.ndarray], list[float]] | None:
    """One image, the visible mask of each of the two classes, and the click; None when the draw failed."""
    classes = rng.choice(len(SHAPES), 2, replace=False)
    colors = rng.choice(len(COLORS), 2, replace=False)
    sizes = rng.uniform(0.28, 0.44, 2) * size
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    angle, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.8) * sizes.sum() / 2
    centres = [(cx, cy), (cx + reach * math.cos(angle), cy + reach * math.sin(angle))]
    masks = [polygon_to_mask(_polygon(SHAPES[c], x, y, s), size, size) for c, (x, y), s in
             zip(classes, centres, sizes, strict=True)]
    bottom, top = masks  # the second shape is drawn over the first
    bottom = bottom & (1 - top)
    if min(int(bottom.sum()), int(top.sum())) < MIN_VISIBLE:
        return None
    click = _edge_click(top, bottom, rng)
    if click is None:
        return None
    img = _background(rng, size, size)
    color_names = list(COLORS)
    _paint(img, masks[0], COLORS[color_names[colors[0]]], rng)
    _paint(img, top, COLORS[color_names[colors[1]]], rng)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return image, {SHAPES[classes[0]]: bottom, SHAPES[classes[1]]: top}, click


def write_split(out: Path, num_scenes: int, rng: np.random.Generator, size: int) -> None:
    texts: dict[str, str] = {}
    points: dict[str, list[list[float]]] = {}
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    scene = 0
    while scene < num_scenes:
        drawn = draw_scene(rng, size)
        if drawn is None:
            continue
        image, masks, click = drawn
        for name, mask in masks.items():
            stem = f"{scene:05d}_{name}"
            Image.fromarray(image).save(out / "images" / f"{stem}.jpg", quality=95)
            Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"{stem}.png")
            texts[stem], points[stem] = name, [click]
        scene += 1
    (out / "texts.json").write_text(json.dumps(texts, indent=0))
    (out / "points.json").write_text(json.dumps(points))


def write_classaware_shapes(root: str | Path, num_train: int = 800, num_eval: int = 50, seed: int = 0,
                            size: int = 128) -> Path:
    """Write train (num_train scenes), val and test (num_eval scenes each) under `root`; returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        write_split(root / split, num_train if split == "train" else num_eval, rng, size)
    return root
