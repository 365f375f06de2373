"""Where DIT's text tokens come from, block by block."""

import torch
from torch import nn

from samadapt.methods.base import ForwardContext


class TextTokenSource(nn.Module):
    """The extra tokens one encoder block sees.

    source "text": the text features projected afresh by this block's own linear layer (L-DIT every block,
    E-DIT's first block); "previous": the previous block's text outputs, re-projected (E-DIT's later blocks).
    Without text the block gets no tokens (windowed layout: plain SAM) or an empty token list (global layout,
    so the block keeps attending globally as it does with text).
    """

    def __init__(self, source: str, in_dim: int, out_dim: int, init: str, dropout: float, mask_padding: bool,
                 always_join: bool) -> None:
        super().__init__()
        self.source = source
        self.proj = nn.Linear(in_dim, out_dim)
        if init == "zero":
            nn.init.zeros_(self.proj.weight)
        else:  # "identity": a re-projection that starts by passing the tokens through
            nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.dropout = nn.Dropout(dropout)
        self.mask_padding = mask_padding
        self.always_join = always_join

    def forward(self, context: ForwardContext, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        text = context.text
        if text is None:
            if not self.always_join:
                return None
            return x.new_zeros(x.shape[0], 0, x.shape[-1]), None
        features = text.tokens if self.source == "text" else context.extra_out
        tokens = self.dropout(self.proj(features.to(x.dtype)))
        # Padding keys are masked out by default; unmasked reproduces the published code. Samples prompted
        # without text (mixed-prompt training) are always fully masked.
        mask = text.mask if self.mask_padding else text.mask.any(dim=1, keepdim=True).expand_as(text.mask)
        return tokens, mask
