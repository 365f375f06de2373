"""Data-loading benchmark: DataModule samples/s per worker next to the rate of merely decoding the same files.

Goal: loading (decode + letterbox + prompts + collate) at >= 0.8 of the decode-only rate, so the data never
starves training. Decode-only means decoding what a sample reads, its JPEG and its mask, and nothing else: the
JPEG with PIL, the mask as stored (a PNG with PIL; a COCO polygon with pycocotools); the ratios against decoding
the JPEG alone, and against decoding with OpenCV (the loader's own, faster decoder for JPEGs and mask PNGs: the
strictest baseline), are reported beside it. Two on-disk layouts of realistic-size JPEGs (640x480 by
default): a folder of images and mask PNGs (FolderDataModule), and the RefCOCO layout (RefCocoDataModule: refs
file, COCO instances.json, several referents per image), whose figures are under "refcoco".

Three loading figures: cold (no pixel cache: every read decodes and letterboxes), and with the pixel cache
(data_modules/pipeline/pixel_cache.py) its first epoch (decode, letterbox and write the cache; in the RefCOCO
layout the referents of one image share its cached pixels) and later epochs (read it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

LAYOUTS = ("folder", "refcoco")


def _write_images(root: Path, num_images: int, width: int, height: int) -> Path:
    """`root/train/images|masks` with textured JPEGs and one elliptical object each."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
    for i in range(num_images):
        base = rng.uniform(60, 190, 3)
        img = base + 25 * np.sin(xx[..., None] / rng.uniform(5, 30)) + rng.normal(0, 12, (height, width, 3))
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        mask = ((xx - cx) / (0.2 * width)) ** 2 + ((yy - cy) / (0.25 * height)) ** 2 <= 1
        img[mask] = rng.uniform(0, 255, 3)
        for split in ("train",) if i else ("train", "val"):
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / split / "images" / f"{i:04d}.jpg",
                                                                      quality=90)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "masks" / f"{i:04d}.png")
    return root


def _write_refcoco(root: Path, num_images: int, width: int, height: int) -> Path:
    """A synthetic RefCOCO layout (refs file, instances.json, images/train2014) with `num_images` train images."""
    from data_modules.synthetic.referring import write_synthetic_refcoco

    return write_synthetic_refcoco(root, num_train=num_images, num_eval=1, width=width, height=height)


def decode_rate(images: list[Path], masks: list[Path | Callable[[], object]] | None = None, repeats: int = 3,
                opencv: bool = False) -> float:
    """Samples per second for decoding each image (to RGB) and, if given, its mask; best of `repeats`.

    A mask is a PNG file or a function that decodes it (a COCO annotation). PIL by default (what SAM's and
    torchvision's readers use); `opencv=True`: the decoder the loader itself uses for plain JPEGs and grayscale PNGs
    (data_modules/pipeline/images.py), which gives the same pixels faster.
    """
    import cv2

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i, p in enumerate(images):
            if opencv:
                cv2.imread(str(p), cv2.IMREAD_COLOR_RGB)
            else:
                with Image.open(p) as im:
                    np.asarray(im.convert("RGB"))
            mask = None if masks is None else masks[i]
            if callable(mask):
                mask()
            elif mask is not None and opencv:
                cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
            elif mask is not None:
                with Image.open(mask) as im:
                    np.asarray(im)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def _decode_work(layout: str, root: Path) -> tuple[list[Path], list[Path | Callable[[], object]]]:
    """(image, mask) of every training sample: what decoding the sample reads."""
    if layout == "folder":
        return sorted((root / "train" / "images").iterdir()), sorted((root / "train" / "masks").iterdir())
    from data_modules.datasets.refcoco import ann_to_mask, cached_refs, load_coco

    coco = load_coco(root / "shapes" / "instances.json")
    refs = [r for r in cached_refs(root / "shapes" / "refs(unc).p") if r["split"] == "train"]
    images = [root / "images" / "train2014" / coco.imgs[r["image_id"]]["file_name"] for r in refs]
    return images, [partial(ann_to_mask, coco, coco.anns[r["ann_id"]]) for r in refs]


def _loader(layout: str, root: Path, size: int, workers: int, batch_size: int = 8, cache: Path | None = None):
    """The layout's training DataLoader (augmentation off) over `root`, with a pixel cache in `cache`."""
    from data_modules.datamodules import FolderDataModule, RefCocoDataModule

    common = dict(image_size=size, num_points=5, batch_size=batch_size, num_workers=workers,
                  pixel_cache_dir=None if cache is None else str(cache))
    if layout == "folder":
        dm = FolderDataModule(str(root), default_text="object", **common)
    else:
        dm = RefCocoDataModule(str(root), dataset="shapes", **common)
    dm.setup("fit")
    return dm.train_dataloader()


def _pass_rate(loader) -> float:
    start = time.perf_counter()
    n = sum(len(batch["sample_id"]) for batch in loader)
    return n / (time.perf_counter() - start)


def _row(rate: float, workers: int, decode: float, image_decode: float, opencv_decode: float) -> dict:
    per_worker = rate / max(1, workers)
    return {"samples_per_s": rate, "per_worker": per_worker, "ratio_to_decode": per_worker / decode,
            "ratio_to_image_decode": per_worker / image_decode, "ratio_to_opencv_decode": per_worker / opencv_decode}


def data_loading_bench(num_images: int = 32, size: int = 512, workers: tuple[int, ...] = (0, 1),
                       rounds: int = 3, layouts: tuple[str, ...] = LAYOUTS) -> dict:
    """Decode-only samples/s vs DataModule samples/s (total and per worker) at `size` px, best of interleaved rounds.

    ratio_to_decode = per-worker loading rate / rate of decoding the sample's image and mask;
    ratio_to_image_decode = the same against decoding the image alone; ratio_to_opencv_decode = against decoding
    them with OpenCV, the loader's own decoder (the strictest; COCO polygons are pycocotools' in every case).
    "workers": cold loading (no cache); "cached": with the pixel cache, "first_epoch" (emptied before the pass, so
    it decodes and writes) and "later_epochs" (the pass after, reading it). The folder layout's figures are at the
    top level, the RefCOCO layout's under "refcoco".
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loader process, like a worker; the decode baseline is single-threaded
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {layout: _layout_bench(layout, Path(tmp) / layout, num_images, size, workers, rounds)
                       for layout in layouts}
    finally:
        torch.set_num_threads(threads)
    first, *others = layouts
    return {**results[first], **{layout: results[layout] for layout in others}}


def _layout_bench(layout: str, tmp: Path, num_images: int, size: int, workers: tuple[int, ...], rounds: int) -> dict:
    write = _write_images if layout == "folder" else _write_refcoco
    root = write(tmp / "data", num_images, 640, 480)
    images, masks = _decode_work(layout, root)
    caches = {w: tmp / f"pixel_cache_{w}" for w in workers}
    loaders = {w: _loader(layout, root, size, w) for w in workers}
    cached = {w: _loader(layout, root, size, w, cache=caches[w]) for w in workers}
    for loader in [*loaders.values(), *cached.values()]:  # warm-up: starts persistent workers, OS file cache
        _pass_rate(loader)
    best = {k: 0.0 for k in ("files", "image", "opencv", *((kind, w) for kind in ("cold", "first", "later")
                                                  for w in workers))}
    for _ in range(rounds):  # interleaved, so background load hits every figure alike
        best["files"] = max(best["files"], decode_rate(images, masks, repeats=1))
        best["image"] = max(best["image"], decode_rate(images, repeats=1))
        best["opencv"] = max(best["opencv"], decode_rate(images, masks, repeats=1, opencv=True))
        for w in workers:
            best["cold", w] = max(best["cold", w], _pass_rate(loaders[w]))
            shutil.rmtree(caches[w], ignore_errors=True)  # the (persistent) workers see an empty cache
            best["first", w] = max(best["first", w], _pass_rate(cached[w]))
            best["later", w] = max(best["later", w], _pass_rate(cached[w]))
    decodes = best["files"], best["image"], best["opencv"]
    rows = {str(w): _row(best["cold", w], w, *decodes) for w in workers}
    cached_rows = {str(w): {"first_epoch": _row(best["first", w], w, *decodes),
                            "later_epochs": _row(best["later", w], w, *decodes)}
                   for w in workers}
    cache_mb = sum(f.stat().st_size for f in caches[workers[0]].rglob("*.px")) / 2**20
    source = "640x480 JPEG + PNG mask" if layout == "folder" else "640x480 JPEG + COCO polygon"
    return {"image_size": size, "images": num_images, "samples": len(images), "source": source,
            "decode_only_per_s": decodes[0], "image_decode_only_per_s": decodes[1],
            "opencv_decode_only_per_s": decodes[2], "workers": rows,
            "cached": cached_rows, "cache_mb_per_sample": cache_mb / len(images)}


if __name__ == "__main__":
    import json

    print(json.dumps(data_loading_bench(), indent=2))
