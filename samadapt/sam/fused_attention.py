"""SAM's image-encoder attention through `scaled_dot_product_attention`, with SAM's own frozen weights.

The official `Attention` writes out the logits, adds the decomposed relative-position bias, applies softmax and
multiplies by the values, each step a full pass over a (heads, N, N) tensor. Here the bias (q·Rh and q·Rw,
broadcast-added into one tensor) is SDPA's additive float mask and SDPA does the rest in one fused kernel.

Windowed blocks gain a second saving. SAM pads the token grid to a multiple of the window with zero tokens
and runs qkv and proj on the padding too (at 512 px: 42x42 instead of 32x32 tokens). Every zero token has the
same q, k, v (the qkv layer's bias), so qkv runs on the real tokens only, the windows are padded with that one
value, and proj runs only on the outputs that are kept. The result is the official one up to float rounding.

`FusedBlock` / `FusedAttention` hold the very same modules and parameters as the `Block` / `Attention` they
replace, under the same names: state dicts (and checkpoints) are identical with and without fusion.

Small windows in bfloat16 (SAM's 14x14) take another route, measured faster on the CPU: the bias is one matmul
of the two factors with a 0/1 expansion matrix (a broadcast add whose inner size is 14 does not vectorise), and
attention is baddbmm (logits plus bias in one kernel), softmax, bmm; SDPA's fused CPU kernel is slower at this
size. Global attention (1024+ tokens) and float32 keep SDPA.
"""

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, Block, get_rel_pos, window_partition, window_unpartition
from torch import nn

MATMUL_PATH_TOKENS = 256  # bf16 attention over at most this many tokens (a 14x14 window: 196) skips SDPA


def rel_pos_bias(attn: nn.Module, q: torch.Tensor, hw: tuple[int, int], by_matmul: bool = False) -> torch.Tensor:
    """SAM's decomposed relative-position bias for queries `q` (B,heads,h*w,d) -> (B,heads,h*w,h*w).

    Only the two small factors (..., h, w, h) and (..., h, w, w) are computed from q; they are broadcast-added
    straight into the one (N, N) tensor SDPA needs. Tables of another size are interpolated as SAM does.
    """
    h, w = hw
    b, heads = q.shape[:2]
    rh = get_rel_pos(h, h, attn.rel_pos_h).to(q.dtype)  # (h, h, d)
    rw = get_rel_pos(w, w, attn.rel_pos_w).to(q.dtype)  # (w, w, d)
    grid_q = q.reshape(b, heads, h, w, -1)
    # contiguous factors (N*h and N*w values, small) make the broadcast sum come out contiguous, so the
    # final reshape is a view and the (N, N) bias is written exactly once
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rh).contiguous()
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rw).contiguous()
    if by_matmul:  # bias[.., i, j] = rel_h[.., i, row(j)] + rel_w[.., i, col(j)]: factors (N, h+w) @ 0/1 (h+w, N)
        return torch.cat([rel_h, rel_w], -1).reshape(b, heads, h * w, h + w) @ expansion(h, w, q)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)


def expansion(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(h+w, h*w) 0/1 matrix: row r < h marks the keys in grid row r, row h + c the keys in grid column c."""
    rows = torch.eye(h, dtype=like.dtype, device=like.device).repeat_interleave(w, dim=1)
    cols = torch.eye(w, dtype=like.dtype, device=like.device).repeat(1, h)
    return torch.cat([rows, cols])


def attention_by_matmul(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                        scale: float) -> torch.Tensor:
    """SDPA's result through baddbmm (the additive mask as its input), softmax and bmm; (B,heads,L,d)."""
    b, heads, length, d = q.shape
    flat = (b * heads, length, d)
    keys_t = k.reshape(flat).transpose(1, 2)
    if mask is None:
        logits = torch.bmm(q.reshape(flat), keys_t) * scale
    else:
        bias = mask.expand(b, heads, length, length).reshape(b * heads, length, length)
        logits = torch.baddbmm(bias, q.reshape(flat), keys_t, alpha=scale)
    return torch.bmm(logits.softmax(-1), v.reshape(flat)).reshape(b, heads, length, d)


def attend(attn: nn.Module, qkv: torch.Tensor, hw: tuple[int, int], num_extra: int = 0,
           extra_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention of (B, T+h*w, 3C) projected tokens -> (B, T+h*w, C), before the output projection.

    The first T = `num_extra` tokens have no grid position: the rel-pos bias covers image-image pairs only.
    extra_mask (B, T) bool: False extra tokens are ignored as keys (padding of the text).
    """
    b, length, _ = qkv.shape
    t = num_extra
    q, k, v = qkv.reshape(b, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    by_matmul = q.dtype == torch.bfloat16 and length <= MATMUL_PATH_TOKENS
    mask = rel_pos_bias(attn, q[:, :, t:], hw, by_matmul) if attn.use_rel_pos else None
    if t and mask is not None:
        mask = F.pad(mask, (t, 0, t, 0))
    if t and extra_mask is not None:
        key_bias = torch.zeros(b, 1, 1, t, dtype=q.dtype, device=q.device)
        key_bias = key_bias.masked_fill(~extra_mask[:, None, None, :], float("-inf"))
        if mask is None:
            mask = F.pad(key_bias, (0, length - t))
        else:  # only the T extra-key columns can be masked: touch those, not the whole (L, L) tensor
            mask[..., :t] += key_bias
    if by_matmul:
        out = attention_by_matmul(q, k, v, mask, attn.scale)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
    return out.transpose(1, 2).reshape(b, length, -1)


class FusedAttention(nn.Module):
    """The same computation as SAM's `Attention` (and samadapt's joint attention), reusing its modules."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.num_heads, self.scale, self.use_rel_pos = attn.num_heads, attn.scale, attn.use_rel_pos
        self.qkv, self.proj = attn.qkv, attn.proj
        self.qkv_in_features = attn.proj.out_features  # the token width (qkv maps it to 3x)
        if attn.use_rel_pos:
            self.rel_pos_h, self.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,H,W,C) -> (B,H,W,C): global attention over the grid given, exactly what `Attention` computes."""
        b, h, w, c = x.shape
        out = attend(self, self.qkv(x).reshape(b, h * w, -1), (h, w))
        return self.proj(out).reshape(b, h, w, c)

    def attend_grid(
        self, x: torch.Tensor, window_size: int, extra: torch.Tensor | None = None,
        extra_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention on normalised tokens x (B,H,W,C), in windows (window_size > 0) or globally (0).

        extra (B,T,C): tokens joined to every window (or the whole grid), extra_mask (B,T) True = real token.
        Returns the image output (B,H,W,C) and the extra tokens' output (B,T,C) averaged over windows, or None.
        """
        b, h, w, c = x.shape
        qkv = self.qkv(x)
        extra_qkv = None if extra is None else self.qkv(extra)
        t = 0 if extra is None else extra.shape[1]
        if window_size == 0:
            grid, per_image = qkv.reshape(b, h * w, -1), 1
            win_h, win_w = h, w
        else:
            qkv = self._pad_like_zero_tokens(qkv, window_size)
            windows, pad_hw = window_partition(qkv, window_size)
            per_image = windows.shape[0] // b
            grid = windows.reshape(windows.shape[0], window_size * window_size, -1)
            win_h = win_w = window_size
        if extra_qkv is not None:
            grid = torch.cat([extra_qkv.repeat_interleave(per_image, 0), grid], dim=1)
            if extra_mask is not None:
                extra_mask = extra_mask.repeat_interleave(per_image, 0)
        out = attend(self, grid, (win_h, win_w), t, extra_mask)
        image = out[:, t:]
        if window_size == 0:
            image = image.reshape(b, h, w, c)
        else:
            image = window_unpartition(image.reshape(-1, window_size, window_size, c), window_size, pad_hw, (h, w))
        extra_out = None
        if extra_qkv is not None:
            # proj is affine, so projecting the window average equals averaging the projected outputs
            extra_out = self.proj(out[:, :t].reshape(b, per_image, t, c).mean(dim=1))
        return self.proj(image), extra_out

    def _pad_like_zero_tokens(self, qkv: torch.Tensor, window_size: int) -> torch.Tensor:
        """Pad (B,H,W,3C) to whole windows with what SAM's zero padding tokens project to (qkv of a zero token:
        the bias for a plain Linear; computed, so a method's replacement of qkv, e.g. LoRA, is honoured too)."""
        b, h, w, width = qkv.shape
        pad_h, pad_w = (-h) % window_size, (-w) % window_size
        if not pad_h and not pad_w:
            return qkv
        fill = self.qkv(qkv.new_zeros(1, self.qkv_in_features)).to(qkv.dtype)[0]
        qkv = torch.cat([qkv, fill.expand(b, h, pad_w, width)], dim=2)
        return torch.cat([qkv, fill.expand(b, pad_h, w + pad_w, width)], dim=1)


class FusedBlock(nn.Module):
    """SAM's `Block` with fused attention: the same norm1 / attn / norm2 / mlp modules, the same output."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.norm1 = block.norm1  # registered in Block's order, so state dicts list the same keys in order
        self.attn = block.attn if isinstance(block.attn, FusedAttention) else FusedAttention(block.attn)
        self.norm2, self.mlp = block.norm2, block.mlp
        self.window_size = block.window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn_out, _ = self.attn.attend_grid(self.norm1(x), self.window_size)
        x = x + attn_out
        return x + self.mlp(self.norm2(x))


def use_fused_attention(encoder: nn.Module) -> int:
    """Replace every SAM `Block` inside `encoder` (wrapped by a method or not) with a `FusedBlock`; return how many."""
    names = [name for name, module in encoder.named_modules() if type(module) is Block]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = encoder.get_submodule(parent_name) if parent_name else encoder
        setattr(parent, child, FusedBlock(getattr(parent, child)))
    return len(names)
