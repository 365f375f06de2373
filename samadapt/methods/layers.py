"""Small trainable layers shared by several methods."""

from typing import Literal

import torch
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.text import TextEncoder, TextFeatures


class Bottleneck(nn.Module):
    """up(act(down(x))) * scale, with `up` zero-initialised so a new branch starts as the identity's zero."""

    def __init__(self, dim: int, hidden: int, scale: float = 1.0, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = act()
        self.up = nn.Linear(hidden, dim)
        self.scale = scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, context: object = None, added: torch.Tensor | None = None) -> torch.Tensor:
        """`added`: something to add in the hidden space, after `down` and before the activation. `context` is
        ignored: it lets a plain Bottleneck serve as a BlockWrapper branch."""
        hidden = self.down(x) if added is None else self.down(x) + added
        return self.up(self.act(hidden)) * self.scale


class TextToPromptTokens(nn.Module):
    """Text -> extra sparse prompt tokens for SAM's decoder: every text token ("tokens") or the pooled sentence
    vector ("pooled"), projected to the prompt width by a small MLP (Linear, GELU, dropout, Linear) or, with
    projection "linear", by one Linear followed by the dropout (the released DIT code's "Default" baseline,
    models/default_sam/net.py `text_proj`, has no dropout: set dropout 0 with it)."""

    def __init__(self, text_encoder: TextEncoder, prompt_dim: int, source: Literal["tokens", "pooled"] = "tokens",
                 dropout: float = 0.0, projection: Literal["mlp", "linear"] = "mlp") -> None:
        super().__init__()
        if source not in ("tokens", "pooled"):
            raise SamAdaptError(f"text_tokens must be tokens or pooled, got {source!r}")
        if projection not in ("mlp", "linear"):
            raise SamAdaptError(f"projection must be mlp or linear, got {projection!r}")
        self.source = source
        text_dim = text_encoder.dim if source == "tokens" else text_encoder.pooled_dim
        if projection == "linear":
            self.net = nn.Sequential(nn.Linear(text_dim, prompt_dim), nn.Dropout(dropout))
        else:
            self.net = nn.Sequential(
                nn.Linear(text_dim, prompt_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(prompt_dim, prompt_dim)
            )

    def append(self, sparse: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        """One sample's sparse prompt embeddings (1,N,C) with its text tokens appended (unchanged without text)."""
        if text is None:
            return sparse
        features = text.tokens if self.source == "tokens" else text.pooled[:, None]
        return torch.cat([sparse, self.net(features).to(sparse.dtype)], dim=1)
