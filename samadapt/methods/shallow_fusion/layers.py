"""Text features -> SAM sparse prompt tokens."""

import torch
from torch import nn


class TextToPromptTokens(nn.Module):
    """Project each text token (or the pooled sentence) to the decoder's prompt width."""

    def __init__(self, text_dim: int, prompt_dim: int, hidden_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        hidden_dim = hidden_dim or prompt_dim
        self.net = nn.Sequential(
            nn.Linear(text_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, prompt_dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
