"""Shared block-injection code: how every method reaches inside SAM's frozen image encoder.

Methods never copy SAM's source. They replace `image_encoder.blocks[i]` with a `BlockWrapper` that keeps the
frozen original block inside it and reuses its norms, qkv/proj and MLP weights, adding any of:
- a branch parallel to the attention and/or the MLP (adapters): `branch(x, context) -> same shape as x`;
- extra tokens joined to the block's token sequence (deep instruction tuning): `extra(context, x) ->
  (tokens (B,T,C), mask (B,T) bool or None)`, attended together with the image tokens through the block's own
  frozen qkv/proj, globally or window by window.
Per-image inputs (text features, CLIP features) reach wrappers through the method's `ForwardContext`.
The wrappers live in SAM (and are saved there); a method finds them again with `wrapped_blocks`.
"""

from collections.abc import Callable

import torch
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    add_decomposed_rel_pos,
    window_partition,
    window_unpartition,
)
from torch import nn

from samadapt.methods.base import ForwardContext
from samadapt.sam.fused_attention import FusedAttention


def replace_submodule(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` where `root.get_submodule(name)` was; return the old module."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def wrap_encoder_blocks(
    encoder: nn.Module, make_wrapper: Callable[[int, Block], nn.Module], indices: list[int] | None = None
) -> list[nn.Module]:
    """Replace encoder.blocks[i] (every block, or `indices`) with make_wrapper(i, block); return the wrappers."""
    chosen = range(len(encoder.blocks)) if indices is None else indices
    wrappers = []
    for i in chosen:
        wrapper = make_wrapper(i, encoder.blocks[i])
        replace_submodule(encoder, f"blocks.{i}", wrapper)
        wrappers.append(wrapper)
    return wrappers


def joint_attention(
    attn: Attention, image: torch.Tensor, extra: torch.Tensor, extra_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM attention over [extra tokens; image tokens] with the frozen qkv/proj weights.

    image (B,H,W,C), extra (B,T,C), extra_mask (B,T) True = real token (False keys are ignored).
    The decomposed relative-position bias is added to the image-image logits only, since the extra tokens
    have no position on the grid.
    """
    b, h, w, c = image.shape
    t, n = extra.shape[1], h * w
    tokens = torch.cat([extra, image.reshape(b, n, c)], dim=1)
    qkv = attn.qkv(tokens).reshape(b, t + n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * attn.num_heads, t + n, -1).unbind(0)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if attn.use_rel_pos:
        image_logits = add_decomposed_rel_pos(
            logits[:, t:, t:], q[:, t:], attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w)
        )
        logits = torch.cat([logits[:, :t], torch.cat([logits[:, t:, :t], image_logits], dim=2)], dim=1)
    if extra_mask is not None and t:
        key_ok = torch.cat([extra_mask, extra_mask.new_ones(b, n)], dim=1).repeat_interleave(attn.num_heads, 0)
        logits = logits.masked_fill(~key_ok[:, None, :], float("-inf"))
    out = (logits.softmax(dim=-1) @ v).view(b, attn.num_heads, t + n, -1).permute(0, 2, 1, 3).reshape(b, t + n, c)
    out = attn.proj(out)
    return out[:, t:].reshape(b, h, w, c), out[:, :t]


def block_attention(
    block: Block, image: torch.Tensor, extra: torch.Tensor | None = None, extra_mask: torch.Tensor | None = None,
    windowed: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The block's attention on normalised tokens, with optional extra tokens.

    Windowed blocks keep their windows when `windowed`: the extra tokens join every window and their outputs
    are averaged over windows. With `windowed=False` every block attends globally (the published L-DIT).
    Blocks with fused attention (`FusedAttention`, model.fused_attention) compute the same through SDPA.
    """
    if isinstance(block.attn, FusedAttention):
        window = block.window_size if windowed or extra is None else 0
        return block.attn.attend_grid(image, window, extra, extra_mask)
    if extra is None:
        if block.window_size == 0:
            return block.attn(image), None
        h, w = image.shape[1:3]
        windows, pad_hw = window_partition(image, block.window_size)
        return window_unpartition(block.attn(windows), block.window_size, pad_hw, (h, w)), None
    if block.window_size == 0 or not windowed:
        return joint_attention(block.attn, image, extra, extra_mask)
    b, h, w, _ = image.shape
    windows, pad_hw = window_partition(image, block.window_size)
    per_image = windows.shape[0] // b
    mask = None if extra_mask is None else extra_mask.repeat_interleave(per_image, 0)
    out, extra_out = joint_attention(block.attn, windows, extra.repeat_interleave(per_image, 0), mask)
    image_out = window_unpartition(out, block.window_size, pad_hw, (h, w))
    return image_out, extra_out.view(b, per_image, *extra_out.shape[1:]).mean(dim=1)


class BlockWrapper(nn.Module):
    """A frozen SAM `Block` plus a method's additions. With none of them it computes exactly what Block does.

    The extra tokens' outputs of this block are left in `context.extra_out` for the next block to read.
    """

    def __init__(
        self,
        block: Block,
        context: ForwardContext,
        attn_branch: nn.Module | None = None,
        mlp_branch: nn.Module | None = None,
        extra_tokens: nn.Module | None = None,
        windowed: bool = True,
    ) -> None:
        super().__init__()
        self.block = block
        self.context = context  # the method's, a plain object: never part of the state dict
        self.attn_branch = attn_branch
        self.mlp_branch = mlp_branch
        self.extra_tokens = extra_tokens
        self.windowed = windowed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blk = self.block
        extra = self.extra_tokens(self.context, x) if self.extra_tokens is not None else None
        tokens, mask = extra if extra is not None else (None, None)
        attn_out, extra_attn = block_attention(
            blk, blk.norm1(x), None if tokens is None else blk.norm1(tokens), mask, self.windowed
        )
        if self.attn_branch is not None:
            attn_out = attn_out + self.attn_branch(x, self.context)
        y = x + attn_out
        mlp_out = blk.mlp(blk.norm2(y))
        if self.mlp_branch is not None:
            mlp_out = mlp_out + self.mlp_branch(y, self.context)
        if tokens is not None:
            tokens = tokens + extra_attn
            self.context.extra_out = tokens + blk.mlp(blk.norm2(tokens))
        return y + mlp_out


def wrapped_blocks(encoder: nn.Module) -> dict[int, BlockWrapper]:
    """The encoder's blocks a method wrapped, by index."""
    return {i: block for i, block in enumerate(encoder.blocks) if isinstance(block, BlockWrapper)}


def wrapper_additions(sam: nn.Module) -> dict[str, nn.Module]:
    """What methods added inside SAM's encoder blocks (branches, extra tokens), by name relative to the model."""
    parts = {}
    for i, wrapper in wrapped_blocks(sam.image_encoder).items():
        for name in ("attn_branch", "mlp_branch", "extra_tokens"):
            if getattr(wrapper, name) is not None:
                parts[f"sam.image_encoder.blocks.{i}.{name}"] = getattr(wrapper, name)
    return parts
