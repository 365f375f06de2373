"""Write a synthetic referring-segmentation dataset ("the red circle") in the RefCOCO/refer layout.

Layout (same as real RefCOCO, so the same loader reads both):
  {out}/{dataset}/refs(unc).p       pickle (protocol 2) of builtins only
  {out}/{dataset}/instances.json    COCO annotations (polygons), categories = shape names
  {out}/images/train2014/COCO_train2014_{image_id:012d}.jpg
The painted pixels of each shape are exactly annToMask of its annotation.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samadapt.io import output_folder

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (215, 35, 35), "green": (35, 170, 50), "blue": (35, 70, 215), "yellow": (230, 205, 35)}
EVAL_SPLITS = ("val", "testA", "testB")


@dataclass
class _Shape:
    shape: str
    color: str
    polygon: list[float]
    mask: np.ndarray  # HxW uint8, == annToMask of the polygon
    centroid: tuple[float, float]  # (x, y)


def _polygon(shape: str, cx: float, cy: float, size: float) -> list[float]:
    r = size / 2.0
    if shape == "circle":
        angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    elif shape == "square":
        pts = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    else:  # upright triangle
        pts = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    return [round(float(v), 2) for v in pts.reshape(-1)]


def polygon_to_mask(polygon: list[float], h: int, w: int) -> np.ndarray:
    """Rasterise exactly as pycocotools' annToMask does for a one-polygon annotation."""
    rles = mask_utils.frPyObjects([polygon], h, w)
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy=False DeprecationWarning
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return mask_utils.decode(mask_utils.merge(rles))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Muted gradient + stripes + noise, so shapes stay visible but the background is not flat."""
    c0, c1 = rng.uniform(85, 145, 3), rng.uniform(85, 145, 3)
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / (w + h)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    s_angle, period = rng.uniform(0, math.pi), rng.uniform(6, 20)
    stripes = np.sin(2 * math.pi * (xx * math.cos(s_angle) + yy * math.sin(s_angle)) / period)
    img += rng.uniform(5, 14) * stripes[..., None]
    img += rng.normal(0, 6, (h, w, 3))
    return img


def _draw_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[_Shape]]:
    """2-5 non-overlapping shapes on a textured background; returns the uint8 image and the shapes."""
    short = min(h, w)
    n_target = int(rng.integers(2, 6))
    boxes: list[tuple[float, float, float, float]] = []
    shapes: list[_Shape] = []
    img = _background(rng, h, w)
    for _ in range(60 * n_target):
        if len(shapes) == n_target:
            break
        size = rng.uniform(0.15, 0.40) * short
        r = size / 2.0
        cx, cy = rng.uniform(r + 1, w - r - 2), rng.uniform(r + 1, h - r - 2)
        box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)  # 2 px margin: rasterised shapes never touch
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
            continue
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        poly = _polygon(shape, cx, cy, size)
        m = polygon_to_mask(poly, h, w)
        if m.sum() == 0:
            continue
        ys, xs = np.nonzero(m)
        rgb = np.array(COLORS[color], dtype=np.float32) + rng.uniform(-12, 12, 3)
        img[m.astype(bool)] = rgb + rng.normal(0, 3, (len(xs), 3))
        boxes.append(box)
        shapes.append(_Shape(shape, color, poly, m, (float(xs.mean()), float(ys.mean()))))
    return np.clip(img, 0, 255).astype(np.uint8), shapes


def _spatial_word(i: int, group: list[int], shapes: list[_Shape], margin: float) -> str | None:
    """A word that singles out shape i among same colour+shape ones, or None if none does."""
    x, y = shapes[i].centroid
    others = [shapes[j].centroid for j in group if j != i]
    most = "most" if len(group) > 2 else ""
    if all(x < ox - margin for ox, _ in others):
        return "left" + most
    if all(x > ox + margin for ox, _ in others):
        return "right" + most
    if all(y < oy - margin for _, oy in others):
        return "top" + most
    if all(y > oy + margin for _, oy in others):
        return "bottom" + most
    return None


def referring_expressions(shapes: list[_Shape], rng: np.random.Generator, margin: float = 5.0) -> list[list[str]]:
    """1-2 unambiguous expressions per shape (empty list when the shape cannot be singled out)."""
    out: list[list[str]] = []
    for i, s in enumerate(shapes):
        group = [j for j, o in enumerate(shapes) if (o.color, o.shape) == (s.color, s.shape)]
        name = f"{s.color} {s.shape}"
        if len(group) == 1:
            options = [f"the {name}", name]
        else:
            word = _spatial_word(i, group, shapes, margin)
            if word is None:
                out.append([])
                continue
            base = word.removesuffix("most")
            if word.endswith("most"):
                where = f"on the far {base}" if base in ("left", "right") else f"at the very {base}"
            else:
                where = f"on the {base}" if base in ("left", "right") else f"at the {base}"
            options = [f"the {word} {name}", f"the {name} {where}"]
            options = list(dict.fromkeys(options))
        n = int(rng.integers(1, min(2, len(options)) + 1))
        picked = rng.permutation(len(options))[:n]
        out.append([options[k] for k in sorted(picked)])
    return out


def write_synthetic_refcoco(
    out_dir: str | Path,
    dataset: str = "shapes",
    num_train: int = 450,
    num_eval: int = 50,
    seed: int = 0,
    width: int = 160,
    height: int = 120,
) -> Path:
    """Write num_train train images and num_eval images per eval split (val, testA, testB); returns out_dir."""
    out = Path(out_dir)
    img_dir = out / "images" / "train2014"
    ann_dir = out / dataset
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cat_ids = {name: i + 1 for i, name in enumerate(SHAPES)}
    splits = ["train"] * num_train + [s for s in EVAL_SPLITS for _ in range(num_eval)]
    images, anns, refs = [], [], []
    ann_id = ref_id = sent_id = 0
    for image_id, split in enumerate(splits, start=1):
        while True:  # redraw until at least one shape can be referred to
            img, shapes = _draw_scene(rng, height, width)
            exprs = referring_expressions(shapes, rng)
            if len(shapes) >= 2 and any(exprs):
                break
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(img).save(img_dir / file_name, quality=95, subsampling=0)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for s, sents in zip(shapes, exprs, strict=True):
            ann_id += 1
            rle = mask_utils.encode(np.asfortranarray(s.mask))
            anns.append({
                "id": ann_id, "image_id": image_id, "category_id": cat_ids[s.shape],
                "segmentation": [s.polygon], "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0, "color": s.color,
            })
            if not sents:
                continue
            ref_id += 1
            sentences = []
            for text in sents:
                sent_id += 1
                sentences.append({"sent": text, "raw": text[0].upper() + text[1:], "tokens": text.split(),
                                  "sent_id": sent_id})
            refs.append({
                "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": cat_ids[s.shape],
                "split": split, "sent_ids": [x["sent_id"] for x in sentences], "sentences": sentences,
                "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            })
    instances = {
        "info": {"description": f"samadapt synthetic referring shapes (seed {seed})"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n, "supercategory": "shape"} for n, i in cat_ids.items()],
    }
    (ann_dir / "instances.json").write_text(json.dumps(instances))
    with open(ann_dir / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return out


def main(argv: list[str] | None = None) -> None:
    """`samadapt synth --out DIR`: write the synthetic referring dataset."""
    p = argparse.ArgumentParser(prog="samadapt synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=output_folder, required=True,
                   help="output root (use it as the data root of RefCocoDataModule)")
    p.add_argument("--dataset", default="shapes", help="dataset folder name (default: shapes)")
    p.add_argument("--num-train", type=int, default=450, help="train images")
    p.add_argument("--num-eval", type=int, default=50, help="images per eval split (val, testA, testB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    a = p.parse_args(argv)
    out = write_synthetic_refcoco(a.out, a.dataset, a.num_train, a.num_eval, a.seed, a.width, a.height)
    print(f"wrote synthetic referring dataset to {out} (root={out}, dataset={a.dataset}, split_by=unc)")


if __name__ == "__main__":
    main()
