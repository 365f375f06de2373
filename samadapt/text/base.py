"""The text-encoder interface: frozen, cached, returns padded token features plus a pooled vector."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TextFeatures:
    """Features of a batch of strings.

    tokens: (B, L, D) float, zero at padded positions; L is the longest string of the batch.
    mask:   (B, L) bool, True at real tokens (including special tokens such as [CLS]/[SEP] or SOT/EOT).
    pooled: (B, P) float, one vector per string (P = the encoder's pooled_dim).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))


class TextEncoder(nn.Module):
    """A frozen text encoder with an LRU cache of per-string features.

    Subclasses set `dim` (token width) and `pooled_dim`, hold their model as a submodule, and
    implement `_encode_batch(texts)` returning padded TextFeatures on the module's device.

    Every distinct string goes through the model once; its unpadded tokens (L_i, D) and pooled
    vector are kept on the CPU in float32 (at most `cache_size` strings, least recently used
    dropped first; 0 disables the cache). The cache is a plain attribute, so it is never part of
    `state_dict()` or a checkpoint; loading weights into the encoder clears it.
    The encoder always stays in eval mode and its parameters never require grad.
    """

    dim: int
    pooled_dim: int

    def __init__(self, cache_size: int = 50_000):
        super().__init__()
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        # Follows .to(device) so forward() knows where to put its outputs.
        self.register_buffer("_device_probe", torch.empty(0), persistent=False)
        self._register_load_state_dict_pre_hook(self._clear_cache_on_load)

    # ---- frozen behaviour -------------------------------------------------------------------
    def freeze(self) -> None:
        """Make every parameter non-trainable and switch to eval mode; subclasses call this last."""
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> TextEncoder:
        # A frozen encoder must keep dropout off even when the parent LightningModule calls .train().
        return super().train(mode and self.trainable)

    trainable: bool = False

    def make_trainable(self) -> None:
        """Fine-tune the encoder itself (DIT's unfrozen setting): no cache, gradients flow, dropout in training."""
        self.trainable = True
        self.clear_cache()
        self.requires_grad_(True)

    # ---- cache ------------------------------------------------------------------------------
    def clear_cache(self) -> None:
        self._cache.clear()

    def cache_info(self) -> dict[str, int]:
        return {"size": len(self._cache), "max_size": self.cache_size}

    def _clear_cache_on_load(self, *args, **kwargs) -> None:
        self.clear_cache()

    @property
    def device(self) -> torch.device:
        return self._device_probe.device

    # ---- encoding ---------------------------------------------------------------------------
    def _encode_batch(self, texts: list[str]) -> TextFeatures:
        """Run the model on `texts` (no duplicates); padded features on self.device."""
        raise NotImplementedError

    def forward(self, texts: list[str] | tuple[str, ...]) -> TextFeatures:
        """Features of `texts` on the module's device, padded to the batch's longest string."""
        if isinstance(texts, str):
            raise TypeError("TextEncoder expects a list of strings, got a single string")
        texts = list(texts)
        if not texts:
            raise ValueError("TextEncoder got an empty list of strings")
        if self.trainable:  # every call goes through the model, with gradients
            return self._encode_batch(texts)
        with torch.no_grad():
            entries = self._lookup(texts)
        lengths = [entries[t][0].shape[0] for t in texts]
        batch, length = len(texts), max(lengths)
        tokens = torch.zeros(batch, length, self.dim)
        mask = torch.zeros(batch, length, dtype=torch.bool)
        pooled = torch.empty(batch, self.pooled_dim)
        for i, text in enumerate(texts):
            tok, pool = entries[text]
            tokens[i, : lengths[i]] = tok
            mask[i, : lengths[i]] = True
            pooled[i] = pool
        return TextFeatures(tokens, mask, pooled).to(self.device)

    def _lookup(self, texts: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Cached entries for every distinct string of `texts`, encoding each missing one on its own.

        One string per model call: padded next to a longer string, a string's features change in the last bit
        (measured on the tiny test BERT: 1.2e-7), so batched entries would depend on which strings happened to
        arrive together. A resumed run starts with an empty cache and would then drift from the uninterrupted
        one (tests/training/test_resume.py); encoded alone, an entry is a function of its string only.
        """
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):  # distinct, in order
            if text in self._cache:
                self._cache.move_to_end(text)
                found[text] = self._cache[text]
            else:
                missing.append(text)
        for text in missing:
            feats = self._encode_batch([text])
            real = feats.mask[0].cpu()
            # clone() so each entry owns its memory instead of pinning the model's output
            found[text] = (feats.tokens[0].detach().float().cpu()[real].clone(),
                           feats.pooled[0].detach().float().cpu().clone())
        self._store(missing, found)
        return found

    def _store(self, texts: list[str], entries: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        if self.cache_size == 0:
            return
        for text in texts:
            self._cache[text] = entries[text]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
