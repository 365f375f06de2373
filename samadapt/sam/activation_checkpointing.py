"""Activation checkpointing per image-encoder block: keep each block's input, recompute its inside in backward.

A block's forward is replaced on the instance (not wrapped in a new module), so module names, state dicts and
attribute access such as `encoder.blocks[i].extra_tokens` stay exactly as they were.

Two modes. "full" keeps only each block's input and recomputes the whole block. "selective" also keeps the
attention's q/k/v projection and the attention output, and recomputes the rest (norms, the MLP, adds). SAM's
encoder weights are frozen, so backward costs about one forward and a full recomputation is a large share of a
step; recomputing only the MLP's first layer and the cheap elementwise work costs less, while the MLP's 4x-wide
hidden activations (the largest saved tensors) are still dropped. Measured (`make bench` section 3, SAM-PTx at
ViT-B 512 px, CPU): full x1.23 time for x0.26 memory, selective x1.16 time for x0.40 memory.

Blocks wrapped by a method read per-image inputs (text, the previous block's extra tokens) from the method's
`context` (methods/base.py ForwardContext), which is emptied when the model's forward returns. The
recomputation in backward therefore gets the context as it was during the forward call.
"""

import copy
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from samadapt.errors import SamAdaptError

Mode = Literal["full", "selective"]
_ATTENTION_OPS = {getattr(torch.ops.aten, name).default for name in (
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention") if hasattr(torch.ops.aten, name)}


def keep_qkv_and_attention(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """Selective policy: save the attention's output and every linear whose output is 3x its input (qkv)."""
    if op in _ATTENTION_OPS:
        return CheckpointPolicy.MUST_SAVE
    if op is torch.ops.aten.addmm.default and args[2].shape[-1] == 3 * args[1].shape[-1]:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _checkpoint(fn: Callable, x: torch.Tensor, mode: Mode) -> torch.Tensor:
    if mode == "selective":
        return checkpoint(fn, x, use_reentrant=False,
                          context_fn=partial(create_selective_checkpoint_contexts, keep_qkv_and_attention))
    return checkpoint(fn, x, use_reentrant=False)


class CheckpointedForward:
    """Callable that runs `forward` under torch.utils.checkpoint (non-reentrant) whenever gradients are recorded."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], context: object | None,
                 mode: Mode = "full") -> None:
        self.forward = forward
        self.context = context
        self.mode = mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.forward(x)
        if self.context is None:
            return _checkpoint(self.forward, x, self.mode)
        seen = copy.copy(self.context)  # what the block may read, as it is now
        calls = 0

        def run(inputs: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:  # the forward call: the context is live, and the block's writes must stay in it
                return self.forward(inputs)
            with self.context.as_it_was(seen):  # recomputation in backward: the forward-time context
                return self.forward(inputs)

        return _checkpoint(run, x, self.mode)


def checkpoint_encoder_blocks(encoder: nn.Module, mode: Mode = "full") -> int:
    """Checkpoint every `encoder.blocks[i]` (plain, fused or wrapped by a method); return how many."""
    if mode not in ("full", "selective"):
        raise SamAdaptError(f"activation_checkpointing must be true, false, full or selective, got {mode!r}")
    for block in encoder.blocks:
        if not isinstance(block.forward, CheckpointedForward):
            block.forward = CheckpointedForward(block.forward, getattr(block, "context", None), mode)
    return len(encoder.blocks)
