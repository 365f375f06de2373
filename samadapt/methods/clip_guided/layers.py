"""The multi-modal semantic adapter: CLIP text, vision and similarity features into a zero-initialised bottleneck."""

import torch
from torch import nn

from samadapt.methods.layers import Bottleneck

FEATURES = ("text", "vision", "similarity")


class SemanticAdapter(nn.Module):
    """branch(x) = Bottleneck(x + sum_f act(W_f f)) for the chosen CLIP features f, per token.

    The SAM-PTx form (text projected, added to the adapter's input, then a bottleneck MLP), widened to three
    features read from `context["clip"]`: "text" (B,E) the sentence embedding, the same for every token;
    "vision" (B,H,W,E) CLIP patch embeddings resampled to SAM's grid; "similarity" (B,H,W,1) their cosine with
    the text. The bottleneck's up-projection starts at zero, so a new adapter adds exactly nothing.
    """

    def __init__(self, width: int, clip_dim: int, hidden: int, features: tuple[str, ...]) -> None:
        super().__init__()
        sizes = {"text": clip_dim, "vision": clip_dim, "similarity": 1}
        self.proj = nn.ModuleDict({name: nn.Linear(sizes[name], width) for name in features})
        self.act = nn.GELU()
        self.bottleneck = Bottleneck(width, hidden)

    def forward(self, x: torch.Tensor, context: dict) -> torch.Tensor:
        clip: dict[str, torch.Tensor] = context["clip"]
        fused = x
        for name, proj in self.proj.items():
            feature = clip[name].to(x.dtype)
            if feature.dim() == 2:  # one vector per image: the same for every token
                feature = feature[:, None, None, :]
            fused = fused + self.act(proj(feature))
        return self.bottleneck(fused)
