"""Data-loading benchmark: DataModule samples/s per worker next to the rate of merely decoding the same files.

Goal: loading (decode + letterbox + prompts + collate) at >= 0.8 of the decode-only rate, so the data never
starves training. Decode-only means decoding every file a sample reads, its JPEG and its mask PNG, and nothing
else, with PIL; the ratios against decoding the JPEG alone, and against decoding both with OpenCV (the loader's
own, faster decoder: the strictest baseline), are reported beside it. Runs on a temporary folder dataset of
realistic-size JPEGs (640x480 by default).

Three loading figures: cold (no pixel cache: every read decodes and letterboxes), and with the pixel cache
(data_modules/pixel_cache.py) its first epoch (decode, letterbox and write the cache) and later epochs (read it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


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


def decode_rate(images: list[Path], masks: list[Path] | None = None, repeats: int = 3, opencv: bool = False) -> float:
    """Samples per second for decoding each image (to RGB) and, if given, its mask; best of `repeats`.

    PIL by default (what SAM's and torchvision's readers use); `opencv=True`: the decoder the loader itself uses
    for plain JPEGs and grayscale PNGs (data_modules/images.py), which gives the same pixels faster.
    """
    import cv2

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i, p in enumerate(images):
            if opencv:
                cv2.imread(str(p), cv2.IMREAD_COLOR_RGB)
                if masks is not None:
                    cv2.imread(str(masks[i]), cv2.IMREAD_UNCHANGED)
                continue
            with Image.open(p) as im:
                np.asarray(im.convert("RGB"))
            if masks is not None:
                with Image.open(masks[i]) as im:
                    np.asarray(im)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def _loader(root: Path, size: int, workers: int, batch_size: int = 8, cache: Path | None = None):
    """The FolderDataModule's training DataLoader (augmentation off) over `root`, with a pixel cache in `cache`."""
    from data_modules.class_datamodules import FolderDataModule

    dm = FolderDataModule(str(root), default_text="object", image_size=size, num_points=5, batch_size=batch_size,
                          num_workers=workers, pixel_cache_dir=None if cache is None else str(cache))
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
                       rounds: int = 3) -> dict:
    """Decode-only samples/s vs DataModule samples/s (total and per worker) at `size` px, best of interleaved rounds.

    ratio_to_decode = per-worker loading rate / rate of decoding the sample's image and mask;
    ratio_to_image_decode = the same against decoding the image alone; ratio_to_opencv_decode = against decoding
    image and mask with OpenCV, the loader's own decoder (the strictest). "workers": cold loading (no cache);
    "cached": with the pixel cache, "first_epoch" (emptied before the pass, so it decodes and writes) and
    "later_epochs" (the pass after, reading it).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loader process, like a worker; the decode baseline is single-threaded
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = _write_images(Path(tmp), num_images, 640, 480)
            images = sorted((root / "train" / "images").iterdir())
            masks = sorted((root / "train" / "masks").iterdir())
            caches = {w: Path(tmp) / f"pixel_cache_{w}" for w in workers}
            loaders = {w: _loader(root, size, w) for w in workers}
            cached = {w: _loader(root, size, w, cache=caches[w]) for w in workers}
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
    finally:
        torch.set_num_threads(threads)
    return {"image_size": size, "images": num_images, "source": "640x480 JPEG + PNG mask",
            "decode_only_per_s": decodes[0], "image_decode_only_per_s": decodes[1],
            "opencv_decode_only_per_s": decodes[2], "workers": rows,
            "cached": cached_rows, "cache_mb_per_sample": cache_mb / num_images}


if __name__ == "__main__":
    import json

    print(json.dumps(data_loading_bench(), indent=2))
