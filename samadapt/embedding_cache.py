"""Image embeddings computed once and reused, for methods that leave the image encoder frozen and untouched.

Keys come from the data (`image_key`: image, input size, flip); a sample whose pixels are random (colour
jitter, blur) has no key and is always encoded. Least recently used entries go first beyond `max_mb`.
"""

from collections import OrderedDict

import torch


class EmbeddingCache:
    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach()
        size = value.numel() * value.element_size()
        if size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def encode(self, keys: list[str | None], images: torch.Tensor, encode) -> torch.Tensor:
        """Embeddings of `images` (B,3,S,S): cached rows reused, the rest encoded in one call of `encode`."""
        found = [self.get(k) if k is not None else None for k in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            fresh = encode(images[missing])
            for row, i in enumerate(missing):
                found[i] = fresh[row]
                if keys[i] is not None:
                    self.put(keys[i], fresh[row])
        return torch.stack([value.to(images.device) for value in found])
