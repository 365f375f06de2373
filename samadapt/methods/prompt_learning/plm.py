"""Prompt Learning Module: a residual offset for SAM's sparse prompt embeddings, read from the prompts and the image.

Self-attention lets the prompt tokens see each other, prompt-to-image cross-attention lets them look at the
image; the result goes through a zero-initialised projection, so a new module leaves the prompts unchanged.
"""

import torch
from torch import nn


class PromptLearningLayer(nn.Module):
    """Pre-norm: prompts attend to each other, then to the image tokens, then an MLP; residual throughout."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor, image: torch.Tensor, image_pe: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm_cross(x)
        x = x + self.cross_attn(h, image + image_pe, image, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class PromptLearningModule(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, mlp_dim: int = 2048, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PromptLearningLayer(dim, num_heads, mlp_dim, dropout) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # offset 0 at the start: step 0 is frozen SAM
        nn.init.zeros_(self.out.bias)

    def forward(self, prompts: torch.Tensor, image: torch.Tensor, image_pe: torch.Tensor) -> torch.Tensor:
        """prompts (B,N,C); image and image_pe (B,C,h,w) -> offset (B,N,C) for the prompts."""
        tokens = image.flatten(2).transpose(1, 2)
        pe = image_pe.flatten(2).transpose(1, 2)
        x = prompts
        for layer in self.layers:
            x = layer(x, tokens, pe)
        return self.out(self.norm_out(x))
