"""On-disk cache of letterboxed pixels, so later epochs neither decode nor resize an image or mask again.

Decoding a 640x480 JPEG and its mask costs ~2.5 ms and letterboxing another ~1 ms, every read, every epoch. The
model input of a deterministic view (same file, size, content long side and flip, no colour jitter or blur) never
changes, so the first read stores it and later reads load ~0.75 MB (512 px) or 3 MB (1024 px) of raw bytes instead.
Scale augmentation (`long_side`) makes up to one view per drawn size: each is its own entry, keyed by that size.

- One file per entry under `<dir>/<fingerprint>/ab/<sha1>.px`, shared by DataLoader workers and later runs. The
  fingerprint names what makes the pixels (resize method, library versions, size, placement of the content):
  change one, a fresh folder.
- The file name hashes the entry's key AND the size and mtime_ns of every source file, so an edited image or mask
  is decoded again, never served stale (the stale file stays on disk; delete the folder to reclaim it).
- Format: a 40-byte header (magic, shape, original size, packed flag) then the raw uint8 payload; masks are bit
  packed (1/8 of the bytes). Written atomically (temp file + rename): a crash never leaves half a file. A file of
  the wrong length (truncated by a full disk, say) is reported, then decoded and written again.
- Size limit in MB: beyond it nothing more is added (no eviction: the entries kept stay useful every epoch).
  Each process counts what it writes and re-lists the folder after every 5% of the limit, so several workers
  can overshoot by at most about 5% each.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from data_modules.pipeline.transforms import _resize_nearest, content_box, letterbox_image
from samadapt.io import atomic_write
from samadapt.sam.preprocess import Letterbox

log = logging.getLogger(__name__)

# What makes the cached pixels; part of the folder name, so changing the letterbox resize invalidates the cache.
RESIZE_METHOD = (f"image: torch {torch.__version__.split('+')[0]} bilinear antialias uint8; "
                 f"mask: cv2 {cv2.__version__} INTER_NEAREST_EXACT; ")
# top_left keeps the folder of caches made before the placement was an option
PLACEMENT = {"top_left": "top-left zero pad", "center": "centred zero pad"}
MAGIC = b"SAPIXv1\0"
HEADER_INTS = 8  # channels, height, width, original height, original width, packed, 2 spare
HEADER_BYTES = len(MAGIC) + 4 * HEADER_INTS


@dataclass
class Entry:
    """One cached array (C, S, S) uint8 and the original (H, W) of the image it came from."""

    array: np.ndarray
    orig_hw: tuple[int, int]


def _stat_signature(sources: list[Path]) -> str:
    parts = []
    for p in sources:
        st = os.stat(p)
        parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


class PixelCache:
    """Letterboxed images and masks of size `image_size`, content placed by `letterbox`, under `root`, at most
    `limit_mb` megabytes."""

    def __init__(self, root: str | Path, image_size: int, limit_mb: float = 20000, letterbox: Letterbox = "top_left"):
        self.image_size, self.letterbox = image_size, letterbox
        method = RESIZE_METHOD + PLACEMENT[letterbox]
        fingerprint = hashlib.sha1(f"{method}|{image_size}".encode()).hexdigest()[:12]
        self.dir = Path(root) / f"s{image_size}-{fingerprint}"
        self.limit_bytes = int(limit_mb * 2**20)
        self._used: int | None = None  # bytes in the folder, listed lazily (on the first write)
        self._since_listing = 0
        self.full = False
        self.stats = {"hits": 0, "misses": 0, "writes": 0, "corrupt": 0}

    def path(self, kind: str, key: str, sources: list[Path]) -> Path:
        digest = hashlib.sha1(f"{kind}|{key}|{_stat_signature(sources)}".encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.px"

    def get(self, path: Path, channels: tuple[int, ...]) -> Entry | None:
        """The entry at `path` (None when absent or damaged: the caller decodes and `put`s it again)."""
        try:
            with open(path, "rb") as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                n = f.readinto(data)
        except FileNotFoundError:
            self.stats["misses"] += 1
            return None
        entry = self._parse(data, n, channels)
        if entry is None:
            self.stats["corrupt"] += 1
            log.warning("pixel cache file %s is damaged (truncated or not a cache file); decoding the sample "
                        "again and rewriting it.", path)
            return None
        self.stats["hits"] += 1
        return entry

    def _parse(self, data: bytearray, n: int, channels: tuple[int, ...]) -> Entry | None:
        if n < HEADER_BYTES or data[: len(MAGIC)] != MAGIC:
            return None
        c, h, w, oh, ow, packed = np.frombuffer(data, np.int32, HEADER_INTS, len(MAGIC))[:6].tolist()
        count = c * h * w
        payload = (count + 7) // 8 if packed else count
        if c not in channels or (h, w) != (self.image_size, self.image_size) or n != HEADER_BYTES + payload or oh <= 0:
            return None
        flat = np.frombuffer(data, np.uint8, payload, HEADER_BYTES)  # a view: no copy for images
        if packed:
            flat = np.unpackbits(flat, count=count)
        return Entry(flat.reshape(c, h, w), (oh, ow))

    def put(self, path: Path, array: np.ndarray, orig_hw: tuple[int, int], packed: bool = False) -> None:
        """Store (C, S, S) uint8 `array` (0/1 values when `packed`) unless the size limit is reached."""
        if self.full:
            return
        payload = np.packbits(array.reshape(-1)) if packed else np.ascontiguousarray(array, dtype=np.uint8)
        size = HEADER_BYTES + payload.nbytes
        if self._over_limit(size):
            self.full = True
            log.warning("pixel cache %s reached its limit of %.0f MB: further samples are not cached (raise "
                        "pixel_cache_mb or free disk space; nothing is evicted).", self.dir, self.limit_bytes / 2**20)
            return
        header = np.array([*array.shape, *orig_hw, int(packed), 0, 0], dtype=np.int32)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(MAGIC)
                f.write(header.tobytes())
                f.write(payload.tobytes())

        try:
            atomic_write(path, write)
        except OSError as e:  # a full disk or read-only folder must not stop training
            self.full = True
            log.warning("cannot write to pixel cache %s (%s); caching stops, samples are decoded.", self.dir, e)
            return
        self._used = (self._used or 0) + size
        self._since_listing += size
        self.stats["writes"] += 1

    def _over_limit(self, size: int) -> bool:
        if self._used is None or self._since_listing > self.limit_bytes // 20:  # other workers write too
            self._used, self._since_listing = self.disk_usage(), 0
        return self._used + size > self.limit_bytes

    def disk_usage(self) -> int:
        """Bytes of the cache files under this fingerprint's folder."""
        if not self.dir.is_dir():
            return 0
        return sum(e.stat().st_size for sub in os.scandir(self.dir) if sub.is_dir()
                   for e in os.scandir(sub.path) if e.name.endswith(".px"))


@dataclass
class SamplePixels:
    """The letterboxed pixels of one sample, decoded or read back from the cache."""

    image: torch.Tensor  # (3, S, S) uint8
    mask: torch.Tensor  # (1, S, S) uint8 {0, 1}
    ignore: torch.Tensor | None  # (1, S, S) bool, None when the dataset has no ignore map
    orig_hw: tuple[int, int]
    content_box: tuple[int, int, int, int]  # (top, left, h, w) of the resized image in the S x S frame
    prompt_mask: np.ndarray  # what prompt sampling falls back on: the original mask, or the letterboxed one when
    # it came from the cache (only entries whose object survived the downscale are cached, so both agree on .any())
    orig_mask: np.ndarray | None  # original-size mask (None when it came from the cache)
    orig_ignore: np.ndarray | None

    @property
    def mask_bool(self) -> np.ndarray:
        """The letterboxed mask as an (S, S) bool view (its values are 0/1: no comparison pass, no copy)."""
        return self.mask[0].numpy().view(np.bool_)

    @property
    def scale(self) -> float:
        """letterboxed coordinate = original coordinate * scale + content offset"""
        return max(self.content_hw) / max(self.orig_hw)

    @property
    def content_hw(self) -> tuple[int, int]:
        """size of the resized content inside the S x S frame"""
        return self.content_box[2], self.content_box[3]

    @property
    def content_offset(self) -> tuple[int, int]:
        """(top, left) of the content in the frame"""
        return self.content_box[0], self.content_box[1]


@dataclass(frozen=True)
class PixelSource:
    """Where one sample's image and mask come from and how to read them.

    read_image() -> HxWx3 uint8; read_mask(image_hw) -> (HxW bool mask, HxW bool ignore or None), checking the size
    itself. `mask_id` tells this mask apart from the other masks of the same image (part of its cache key);
    `mask_files` are the files it is read from, so an edit is seen (None: unknown, the mask is never cached).
    """

    image_file: Path
    read_image: Callable[[], np.ndarray]
    mask_id: str
    mask_files: list[Path] | None
    read_mask: Callable[[tuple[int, int]], tuple[np.ndarray, np.ndarray | None]]


def letterboxed_pixels(
    source: PixelSource,
    size: int,
    cache: PixelCache | None = None,
    flipped: bool = False,
    augment: Callable[[np.ndarray], np.ndarray] | None = None,
    need_original: bool = False,
    long_side: int | None = None,
    letterbox: Letterbox = "top_left",
) -> SamplePixels:
    """Letterboxed image and target of a sample, from `cache` when it holds them, else decoded and stored.

    The image is cached unless `augment` (random pixels) is set; the mask unless `need_original` (evaluation keeps
    decoding it for its original-size target) or the source names no mask files.
    Flipping happens on the original arrays before letterboxing, exactly as without the cache.
    `long_side`: the content's long side (scale augmentation; default the frame's `size`), part of the cache keys.
    `letterbox`: where the content goes; a cache holds one placement (its own), which must be this one.
    """
    if cache is not None and (cache.image_size, cache.letterbox) != (size, letterbox):
        raise ValueError(f"pixel cache {cache.dir} holds {cache.letterbox} frames of {cache.image_size} px, "
                         f"not {letterbox} of {size}")
    scaled = f"/{long_side}" if long_side not in (None, size) else ""
    flip_tag = scaled + ("|flip" if flipped else "")
    image_path = mask_path = None
    image_entry = mask_entry = None
    if cache is not None and augment is None:
        image_path = cache.path("image", f"{source.image_file}@{size}{flip_tag}", [source.image_file])
        image_entry = cache.get(image_path, (3,))
    if cache is not None and not need_original and source.mask_files is not None:
        mask_path = cache.path("mask", f"{source.mask_id}@{size}{flip_tag}", source.mask_files)
        mask_entry = cache.get(mask_path, (1, 2))  # 2: with the ignore map

    image = None
    if image_entry is None:
        image = source.read_image()
        orig_hw = (int(image.shape[0]), int(image.shape[1]))
    else:
        orig_hw = image_entry.orig_hw
    mask = ignore = None
    if mask_entry is None:
        mask, ignore = source.read_mask(orig_hw)
        if flipped:
            mask = mask[:, ::-1]
            ignore = None if ignore is None else ignore[:, ::-1]
    elif mask_entry.orig_hw != orig_hw:  # image and mask entries from different versions: decode both
        return letterboxed_pixels(source, size, None, flipped, augment, need_original, long_side, letterbox)

    if image_entry is not None:
        image_lb = torch.from_numpy(image_entry.array)
    else:
        if flipped:
            image = image[:, ::-1]
        if augment is not None:
            image = augment(np.ascontiguousarray(image))
        image_lb = letterbox_image(image, size, long_side, letterbox)
        if image_path is not None:
            cache.put(image_path, image_lb.numpy(), orig_hw)

    box = content_box(orig_hw, size, long_side, letterbox)
    if mask_entry is not None:
        maps = mask_entry.array
        ignore_lb = torch.from_numpy(maps[1:].view(np.bool_)) if len(maps) == 2 else None  # values are 0/1
        return SamplePixels(image_lb, torch.from_numpy(maps[:1]), ignore_lb, orig_hw, box, maps[0].view(np.bool_),
                            None, None)

    top, left, nh, nw = box
    maps = np.zeros((1 if ignore is None else 2, size, size), dtype=np.uint8)
    maps[0, top:top + nh, left:left + nw] = _resize_nearest(mask, nh, nw)
    if ignore is not None:
        maps[1, top:top + nh, left:left + nw] = _resize_nearest(ignore, nh, nw)
    # an object that vanished in the downscale is prompted from its original mask: keep decoding those
    if mask_path is not None and bool(maps[0].any()) == bool(mask.any()):
        cache.put(mask_path, maps, orig_hw, packed=True)
    mask_lb = torch.from_numpy(maps[:1])
    ignore_lb = torch.from_numpy(maps[1:].view(np.bool_)) if ignore is not None else None
    return SamplePixels(image_lb, mask_lb, ignore_lb, orig_hw, box, mask, mask, ignore)
