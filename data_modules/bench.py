"""Data-loading benchmark: DataModule samples/s per worker next to the rate of merely decoding the same images.

Goal: loading (decode + mask + letterbox + prompts + collate) at >= 0.8 of the decode-only rate, so the data
never starves training. Runs on a temporary folder dataset of realistic-size JPEGs (640x480 by default).
"""

from __future__ import annotations

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


def decode_rate(paths: list[Path], repeats: int = 2) -> float:
    """Images per second for PIL open + convert("RGB") + numpy, best of `repeats` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                np.asarray(im.convert("RGB"))
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def loader_rate(root: Path, size: int, workers: int, batch_size: int = 8, repeats: int = 2) -> float:
    """Samples per second through the FolderDataModule's training DataLoader (augmentation off), best pass."""
    from data_modules.class_datamodules import FolderDataModule

    dm = FolderDataModule(str(root), default_text="object", image_size=size, num_points=5, batch_size=batch_size,
                          num_workers=workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    best = float("inf")
    for _ in range(repeats + (1 if workers else 0)):  # one extra pass warms up persistent workers
        start = time.perf_counter()
        n = sum(len(batch["sample_id"]) for batch in loader)
        best = min(best, time.perf_counter() - start)
    return n / best


def data_loading_bench(num_images: int = 32, size: int = 512, workers: tuple[int, ...] = (0, 1)) -> dict:
    """Decode-only images/s vs DataModule samples/s (total and per worker) at `size` px; ratio = per worker / decode."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loader process, like a worker; the decode baseline is single-threaded
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = _write_images(Path(tmp), num_images, 640, 480)
            paths = sorted((root / "train" / "images").iterdir())
            decode = decode_rate(paths)
            rows = {}
            for w in workers:
                rate = loader_rate(root, size, w)
                per_worker = rate / max(1, w)
                rows[str(w)] = {"samples_per_s": rate, "per_worker": per_worker, "ratio_to_decode": per_worker / decode}
    finally:
        torch.set_num_threads(threads)
    return {"image_size": size, "images": num_images, "source": "640x480 JPEG", "decode_only_per_s": decode,
            "workers": rows}


if __name__ == "__main__":
    import json

    print(json.dumps(data_loading_bench(), indent=2))
