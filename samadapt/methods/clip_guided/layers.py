"""The multi-modal semantic adapter: CLIP text, vision and similarity features added inside a zero-initialised
bottleneck parallel to an encoder block."""

import torch
from torch import nn

from samadapt.methods.base import ForwardContext
from samadapt.methods.layers import Bottleneck
from samadapt.text.clip_vision import resample_to_grid

FEATURES = ("text", "vision", "similarity")


class SemanticAdapter(nn.Module):
    """branch(x) = up(GELU(down(x) + sum_f W_f f)) for the chosen CLIP features f, per token.

    Features from `context.clip`: "text" (B,E) the unit sentence embedding, the same for every token;
    "vision" (B,h,w,E) unit CLIP patch embeddings and "similarity" (B,h,w,1) their cosine with the text, both on
    CLIP's own patch grid. The features enter the bottleneck's hidden space (not the encoder's width), which
    keeps the adapter light. A spatial feature is projected on CLIP's grid and then resampled bilinearly to SAM's
    token grid: bilinear weights sum to one, so this equals projecting the resampled feature, for
    ~1/20 of the work at 512 px. `up` starts at zero, so a new adapter adds exactly nothing.
    """

    def __init__(self, width: int, clip_dim: int, hidden: int, features: tuple[str, ...]) -> None:
        super().__init__()
        sizes = {"text": clip_dim, "vision": clip_dim, "similarity": 1}
        self.proj = nn.ModuleDict({name: nn.Linear(sizes[name], hidden) for name in features})
        self.bottleneck = Bottleneck(width, hidden)

    def forward(self, x: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        """x (B,H,W,C) tokens of the block -> (B,H,W,C) branch output."""
        added = 0
        for name, proj in self.proj.items():
            projected = proj(context.clip[name].to(x.dtype))
            if projected.dim() == 2:  # one vector per image: the same for every token
                projected = projected[:, None, None, :]
            else:
                projected = resample_to_grid(projected, tuple(x.shape[1:3]))
            added = added + projected
        return self.bottleneck(x, added=added)
