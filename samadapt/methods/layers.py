"""Small trainable layers shared by several methods."""

import torch
from torch import nn


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

    def forward(self, x: torch.Tensor, context: dict | None = None, added: torch.Tensor | None = None) -> torch.Tensor:
        """`added`: something to add in the hidden space, after `down` and before the activation."""
        hidden = self.down(x) if added is None else self.down(x) + added
        return self.up(self.act(hidden)) * self.scale
