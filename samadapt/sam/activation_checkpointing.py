"""Activation checkpointing per image-encoder block: keep each block's input, recompute its inside in backward.

A block's forward is replaced on the instance (not wrapped in a new module), so module names, state dicts and
attribute access such as `encoder.blocks[i].extra_tokens` stay exactly as they were.

Blocks wrapped by a method read per-image inputs (text, the previous block's extra tokens) from the method's
shared `context` dict, which is cleared when the encoder call returns. The recomputation in backward therefore
gets the context as it was during the forward call.
"""

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class CheckpointedForward:
    """Callable that runs `forward` under torch.utils.checkpoint (non-reentrant) whenever gradients are recorded."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], context: dict | None) -> None:
        self.forward = forward
        self.context = context

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.forward(x)
        if self.context is None:
            return checkpoint(self.forward, x, use_reentrant=False)
        seen = dict(self.context)  # what the block may read, as it is now
        calls = 0

        def run(inputs: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:  # the forward call: the context is live, and the block's writes must stay in it
                return self.forward(inputs)
            current = dict(self.context)  # recomputation in backward: give back the forward-time context
            self.context.clear()
            self.context.update(seen)
            try:
                return self.forward(inputs)
            finally:
                self.context.clear()
                self.context.update(current)

        return checkpoint(run, x, use_reentrant=False)


def checkpoint_encoder_blocks(encoder: nn.Module) -> int:
    """Checkpoint every `encoder.blocks[i]` (plain, fused or wrapped by a method); return how many."""
    for block in encoder.blocks:
        if not isinstance(block.forward, CheckpointedForward):
            block.forward = CheckpointedForward(block.forward, getattr(block, "context", None))
    return len(encoder.blocks)
