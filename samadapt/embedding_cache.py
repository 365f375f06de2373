"""Image embeddings computed once and reused, for methods that leave the image encoder frozen and untouched.

Keys come from the data (`image_key`: image, input size, flip); a sample whose pixels are random (colour
jitter, blur) has no key and is always encoded. Two tiers: memory (least recently used entries go first
beyond `max_mb`) and, optionally, a directory that outlives the process (same rule beyond `disk_max_mb`).
The directory holds one sub-folder per encoder fingerprint, so embeddings of another SAM are never read.
"""

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from samadapt.io import atomic_torch_save


def _nbytes(value: torch.Tensor) -> int:
    return value.numel() * value.element_size()


def encoder_fingerprint(encoder: nn.Module, extra: str = "") -> str:
    """A short hash of every weight and buffer of the encoder (and `extra`, e.g. the pixel normalisation)."""
    digest = hashlib.sha1(extra.encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class DiskStore:
    """One file per key (`<sha1>.pt`: the key and the embedding), written atomically, read with weights_only."""

    def __init__(self, directory: str | Path, max_mb: float) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_mb * 2**20)
        # name -> size, oldest use first (file modification times carry the order across processes)
        files = sorted(self.directory.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        self.sizes: OrderedDict[str, int] = OrderedDict((p.name, p.stat().st_size) for p in files)
        self.bytes = sum(self.sizes.values())

    def _name(self, key: str) -> str:
        return hashlib.sha1(key.encode()).hexdigest() + ".pt"

    def get(self, key: str) -> torch.Tensor | None:
        name = self._name(key)
        path = self.directory / name
        if name not in self.sizes and not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(entry, dict) or entry.get("key") != key or not torch.is_tensor(entry.get("value")):
                raise ValueError("not an embedding of this key")
            os.utime(path)  # recently used
        except Exception:  # unreadable, truncated by another writer's crash, or foreign: forget it
            self._remove(name)
            return None
        if name not in self.sizes:  # written by another process since this one started
            self.sizes[name] = path.stat().st_size
            self.bytes += self.sizes[name]
        self.sizes.move_to_end(name)
        return entry["value"]

    def put(self, key: str, value: torch.Tensor) -> None:
        name = self._name(key)
        if name in self.sizes:
            return
        path = self.directory / name
        atomic_torch_save({"key": key, "value": value.detach().cpu().clone()}, path)
        self.sizes[name] = path.stat().st_size
        self.bytes += self.sizes[name]
        while self.bytes > self.max_bytes and self.sizes:
            self._remove(next(iter(self.sizes)))

    def _remove(self, name: str) -> None:
        self.bytes -= self.sizes.pop(name, 0)
        (self.directory / name).unlink(missing_ok=True)


class EmbeddingCache:
    def __init__(self, max_mb: float, directory: str | Path | None = None, disk_max_mb: float = 0.0,
                 fingerprint: str = "") -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self.disk = DiskStore(Path(directory) / fingerprint, disk_max_mb) if directory is not None else None

    def get(self, key: str) -> torch.Tensor | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        elif self.disk is not None and (value := self.disk.get(key)) is not None:
            self._remember(key, value)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().clone()  # a row of a batch: keep only its own storage alive
        self._remember(key, value)
        if self.disk is not None:
            self.disk.put(key, value)

    def _remember(self, key: str, value: torch.Tensor) -> None:
        size = _nbytes(value)
        if size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= _nbytes(old)

    def encode(self, keys: list[str | None], images: torch.Tensor, encode) -> torch.Tensor:
        """Embeddings of `images` (B,3,S,S): cached rows reused, each missing image with a key encoded on its own.

        One image per call of `encode`: an image's embedding depends in the last bits on the batch it is encoded
        in (tiny SAM, 128 px: 1.9e-6 between batches of 1 and 3), so an entry made in a batch would depend on
        which images happened to miss together, and a resumed run (cold cache) would drift from an uninterrupted
        one (tests/training/test_resume.py). Encoded alone, an entry is a function of its key only.
        """
        found = [self.get(k) if k is not None else None for k in keys]
        keyless = [i for i, key in enumerate(keys) if key is None]
        if keyless:  # random pixels (colour jitter, blur): never stored, so one call as without a cache
            for i, value in zip(keyless, encode(images[keyless]), strict=True):
                found[i] = value
        for i, key in enumerate(keys):
            if found[i] is None:
                found[i] = encode(images[i : i + 1])[0]
                self.put(key, found[i])
        return torch.stack([value.to(images.device) for value in found])


def cache_plan(datamodule: object) -> str:
    """What the cache will do with this DataModule's training images, from its augmentation settings."""
    settings = dict(getattr(datamodule, "hparams", {}) or {})
    random = [name for name in ("color_jitter", "blur") if settings.get(name)]
    if random:
        return (f"embedding cache: training images are encoded every time ({' and '.join(random)} change their "
                "pixels at random); evaluation images are cached")
    views = (2 if settings.get("hflip") else 1) * len(settings.get("random_long_side") or [None])
    if views > 1:
        return (f"embedding cache: training images cached per view (up to {views} views each: "
                "flipped or not, at each drawn size)")
    return "embedding cache: every image is encoded once and reused"
