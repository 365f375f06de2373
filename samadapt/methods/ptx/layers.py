"""Parallel adapters for SAM's encoder blocks, with and without the class text (SAM-PTx)."""

import torch
from torch import nn

from samadapt.methods.base import ForwardContext
from samadapt.methods.layers import Bottleneck
from samadapt.text import TextFeatures

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def text_vector(text: TextFeatures | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The pooled class embedding (B,P) and a (B,1) gate: 0 for samples prompted without text.

    SamAdaptModel hides the text of samples drawn without a text prompt by clearing their token mask; the
    pooled vector is still there, so the gate reads the mask.
    """
    if text is None:
        return None
    return text.pooled, text.mask.any(dim=1, keepdim=True).to(text.pooled.dtype)


class TextProjection(nn.Module):
    """t~ = act(W_t t): the frozen text embedding projected to a width.

    zero_init: W_t and its bias start at zero, so t~ = act(0) = 0 (GELU'(0) = 0.5 keeps the gradient alive).
    Used where the projected text is added straight to SAM's own embeddings (prompt / decoder injection), so
    step 0 is frozen SAM. Inside an adapter the zero-initialised up-projection already guarantees that.
    """

    def __init__(self, text_dim: int, out_dim: int, act: str = "gelu", zero_init: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(text_dim, out_dim)
        self.act = ACTIVATIONS[act]()
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, text: TextFeatures | None, dtype: torch.dtype) -> torch.Tensor | None:
        """(B,out_dim), zero rows for samples without text; None when the batch has no text."""
        vector = text_vector(text)
        if vector is None:
            return None
        pooled, gate = vector
        return (self.act(self.linear(pooled)) * gate).to(dtype)


class ParallelBranch(nn.Module):
    """One adapter parallel to an attention or MLP sub-layer: up(act(down(x [+ t~]))) * scale.

    With `text_proj` it is SAM-PTx's Parallel-Text Adapter: the class embedding, projected to the token width,
    is added to every token of the adapter's input (x' = x + t~). Without it, SU-SAM's parallel adapter.
    `up` is zero-initialised (Bottleneck), so a new branch adds exactly zero. `text_proj` may be shared by
    several branches (one W_t for the whole encoder) or each branch's own.
    """

    def __init__(self, dim: int, width: int, scale: float, act: str, text_proj: TextProjection | None = None) -> None:
        super().__init__()
        self.text_proj = text_proj
        self.bottleneck = Bottleneck(dim, width, scale, ACTIVATIONS[act])

    def forward(self, x: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        if self.text_proj is not None:
            text = self.text_proj(context.text, x.dtype)
            if text is not None:  # x (B,H,W,C) + t~ (B,C) on every token
                x = x + text[:, None, None, :]
        return self.bottleneck(x)
