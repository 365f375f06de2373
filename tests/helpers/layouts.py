"""Tiny synthetic datasets in the official on-disk layouts (COCO low-data, ADE20K, COD10K, CelebAMask-HQ, folder).

Shapes on textured backgrounds (the scenes of data_modules.synthetic.referring); each writer returns the data root;
the readers cannot tell them from real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from data_modules.datasets.class_names import CELEBAMASK_PARTS, COCO_CLASSES
from data_modules.synthetic.referring import _draw_scene

# the 80 COCO category ids (1..90 with the 10 unused ids left out)
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
_SHAPE_COCO = {"circle": 33, "square": 63, "triangle": 34}  # sports ball, tv, kite (contiguous 1..80 index)
_SHAPE_ADE = {"circle": 119, "square": 41, "triangle": 27}  # ball, box, mirror (ADE index 0..149)


def _save_jpg(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def _save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _write_split(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_coco_lowdata(root: str | Path, num_train: int = 4, num_val: int = 3, seed: int = 0,
                       width: int = 96, height: int = 72, split: str = "1_512") -> Path:
    """train2017/ val2017/ masks/ annotations/instances_*.json splits/coco/<split>/labeled.txt splits/coco/val.txt."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    categories = [{"id": cid, "name": name, "supercategory": "thing"}
                  for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES, strict=True)]
    ann_id = 0
    for folder, n, list_path in (("train2017", num_train, f"splits/coco/{split}/labeled.txt"),
                                 ("val2017", num_val, "splits/coco/val.txt")):
        images, anns, lines = [], [], []
        for i in range(n):
            image_id = 1000 * (folder == "val2017") + i + 1
            img, shapes = _draw_scene(rng, height, width)
            label = np.zeros((height, width), np.uint8)
            for s in shapes:
                contiguous = _SHAPE_COCO[s.shape]
                label[s.mask.astype(bool)] = contiguous
                ann_id += 1
                rle = mask_utils.encode(np.asfortranarray(s.mask))
                anns.append({"id": ann_id, "image_id": image_id, "category_id": COCO_CATEGORY_IDS[contiguous - 1],
                             "segmentation": [s.polygon], "area": float(mask_utils.area(rle)),
                             "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
            label[0, :] = 255  # a strip of ignore pixels, as UniMatch masks have on unlabelled regions
            name = f"{image_id:012d}"
            _save_jpg(img, root / folder / f"{name}.jpg")
            _save_png(label, root / "masks" / folder / f"{name}.png")
            images.append({"id": image_id, "file_name": f"{name}.jpg", "height": height, "width": width})
            lines.append(f"{folder}/{name}.jpg masks/{folder}/{name}.png")
        out = root / "annotations" / f"instances_{folder}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
        _write_split(root / list_path, lines)
    return root


def write_ade20k(root: str | Path, num_train: int = 4, num_val: int = 3, seed: int = 0,
                 width: int = 96, height: int = 72, split: str = "1_64") -> Path:
    """images/{training,validation} annotations/{...} (UniMatch-V2 labels 0..149, 255) + splits/ade20k."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for sub, n, list_path in (("training", num_train, f"splits/ade20k/{split}/labeled.txt"),
                              ("validation", num_val, "splits/ade20k/val.txt")):
        lines = []
        for i in range(n):
            img, shapes = _draw_scene(rng, height, width)
            label = np.zeros((height, width), np.uint8)  # background: class 0 (wall)
            label[-3:, :] = 255
            for s in shapes:
                label[s.mask.astype(bool)] = _SHAPE_ADE[s.shape]
            name = f"ADE_{sub[:5]}_{i + 1:08d}"
            _save_jpg(img, root / "images" / sub / f"{name}.jpg")
            _save_png(label, root / "annotations" / sub / f"{name}.png")
            lines.append(f"images/{sub}/{name}.jpg annotations/{sub}/{name}.png")
        _write_split(root / list_path, lines)
    return root


def write_cod10k(root: str | Path, num_train: int = 4, num_test: int = 3, seed: int = 0,
                 width: int = 96, height: int = 72, noncam: int = 1) -> Path:
    """Train|Test/Image/COD10K-CAM-...jpg and GT_Object/<stem>.png (0/255), plus `noncam` NonCAM images per split."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = (("Aquatic", 3, "Crab"), ("Terrestrial", 23, "StickInsect"), ("Flying", 53, "Bird"))
    counter = 0
    for split, n in (("Train", num_train), ("Test", num_test)):
        for i in range(n + noncam):
            img, shapes = _draw_scene(rng, height, width)
            counter += 1
            if i < n:
                sup, sub_id, cls = classes[i % len(classes)]
                stem = f"COD10K-CAM-{1 + i % 3}-{sup}-{sub_id}-{cls}-{counter}"
                gt = shapes[0].mask.astype(np.uint8) * 255
            else:
                stem = f"COD10K-NonCAM-5-Background-1-Sky-{counter}"
                gt = np.zeros((height, width), np.uint8)
            _save_jpg(img, root / split / "Image" / f"{stem}.jpg")
            _save_png(gt, root / split / "GT_Object" / f"{stem}.png")
    return root


def write_celebamask(root: str | Path, partition: tuple[int, ...] = (0, 0, 0, 1, 1, 2), seed: int = 0,
                     image_size: int = 1024, mask_size: int = 512) -> Path:
    """CelebA-HQ-img/{k}.jpg, CelebAMask-HQ-mask-anno/{k//2000}/{k:05d}_{part}.png and both partition files.

    Image k gets skin, nose, hair, l_eye and r_eye (hair overlapping the skin, to exercise the merge order).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    mapping, eval_lines = ["idx orig_idx orig_file"], []
    m = mask_size
    yy, xx = np.mgrid[0:m, 0:m]
    for k, code in enumerate(partition):
        cx, cy = m / 2 + rng.uniform(-20, 20), m / 2 + rng.uniform(-20, 20)
        skin = ((xx - cx) / (0.3 * m)) ** 2 + ((yy - cy) / (0.38 * m)) ** 2 <= 1
        parts = {
            "skin": skin,
            "hair": skin & (yy < cy - 0.2 * m),
            "nose": (abs(xx - cx) < 0.03 * m) & (abs(yy - cy) < 0.08 * m),
            "l_eye": ((xx - (cx - 0.12 * m)) ** 2 + (yy - (cy - 0.08 * m)) ** 2) < (0.04 * m) ** 2,
            "r_eye": ((xx - (cx + 0.12 * m)) ** 2 + (yy - (cy - 0.08 * m)) ** 2) < (0.04 * m) ** 2,
        }
        canvas = np.full((m, m, 3), 40, np.uint8)
        colours = {"skin": (220, 180, 150), "hair": (60, 40, 20), "nose": (200, 150, 120), "l_eye": (30, 30, 90),
                   "r_eye": (30, 30, 90)}
        for part in CELEBAMASK_PARTS:  # paint in the official order
            if part in parts:
                canvas[parts[part]] = colours[part]
                _save_png(parts[part] * 255, root / "CelebAMask-HQ-mask-anno" / str(k // 2000) / f"{k:05d}_{part}.png")
        big = np.asarray(Image.fromarray(canvas).resize((image_size, image_size), Image.BILINEAR))
        _save_jpg(big, root / "CelebA-HQ-img" / f"{k}.jpg")
        orig = f"{100001 + k:06d}.jpg"
        mapping.append(f"{k} {100000 + k} {orig}")
        eval_lines.append(f"{orig} {code}")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(eval_lines) + "\n")
    return root


def write_folder(root: str | Path, splits: tuple[tuple[str, int], ...] = (("train", 4), ("val", 3)), seed: int = 0,
                 width: int = 96, height: int = 72) -> Path:
    """<root>/<split>/images/*.jpg, masks/*.png (0/255) and texts.json naming each image's first shape."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in splits:
        texts = {}
        for i in range(n):
            img, shapes = _draw_scene(rng, height, width)
            stem = f"{split}_{i:03d}"
            _save_jpg(img, root / split / "images" / f"{stem}.jpg")
            _save_png(shapes[0].mask * 255, root / split / "masks" / f"{stem}.png")
            texts[stem] = shapes[0].shape
        (root / split / "texts.json").write_text(json.dumps(texts))
    return root
