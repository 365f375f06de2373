"""Fused attention (SDPA) gives the official SAM encoder's outputs and gradients, for plain SAM and every method."""

import copy

import pytest
import torch

from samadapt.methods import METHODS
from samadapt.methods.injection import block_attention
from samadapt.sam import build_sam, build_sam_from_config
from samadapt.sam.build import tiny_config
from samadapt.sam.fused_attention import (
    FusedAttention,
    FusedBlock,
    attention_by_matmul,
    rel_pos_bias,
    use_fused_attention,
)
from samadapt.sam.loop import encode_images
from samadapt.training.module import SamAdaptModule

TOL = 1e-4  # fp32 max abs difference allowed against the official code


def random_sam(**config):
    """A tiny SAM with non-zero rel-pos tables (zeros would hide a wrong bias)."""
    torch.manual_seed(0)
    sam = build_sam_from_config(tiny_config(**config))
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.5)
    return sam.requires_grad_(False).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("config", [{}, {"window_size": 3, "image_size": 64}])
def test_fused_encoder_equals_official(config):
    """The tiny SAM as configured (8x8 windows on a 16x16 grid) and a window that needs padding (3 on 8x8)."""
    official = random_sam(**config)
    fused = copy.deepcopy(official)
    assert use_fused_attention(fused.image_encoder) == len(official.image_encoder.blocks)
    assert all(isinstance(b, FusedBlock) for b in fused.image_encoder.blocks)
    assert {b.window_size for b in fused.image_encoder.blocks} == {0, official.image_encoder.blocks[0].window_size}
    size = official.image_encoder.img_size
    images = torch.rand(2, 3, size, size) * 255
    with torch.no_grad():
        assert max_diff(encode_images(fused, images), encode_images(official, images)) <= TOL
    # same parameter objects under the same names: checkpoints are interchangeable
    assert list(fused.state_dict()) == list(official.state_dict())


def test_fused_encoder_gradients_equal_official():
    """Input and weight gradients, with the encoder trainable (the rel-pos tables get their gradient too)."""
    official = random_sam(window_size=3, image_size=64).requires_grad_(True)
    fused = copy.deepcopy(official)
    use_fused_attention(fused.image_encoder)
    images = torch.rand(1, 3, 64, 64) * 255
    grads = []
    for sam in (official, fused):
        x = images.clone().requires_grad_(True)
        (encode_images(sam, x) ** 2).sum().backward()
        grads.append({"input": x.grad, **{n: p.grad for n, p in sam.image_encoder.named_parameters()}})
    assert set(grads[0]) == set(grads[1])
    for name, grad in grads[0].items():
        scale = max(1.0, grad.abs().max().item())
        assert max_diff(grads[1][name], grad) <= TOL * scale, name


@pytest.mark.parametrize("windowed", [True, False])
@pytest.mark.parametrize("block_index", [0, 1])  # tiny SAM: block 0 windowed, block 1 global
def test_blocks_with_extra_tokens_and_masks_equal_official(windowed, block_index):
    """injection.block_attention with text-like extra tokens and a key mask: fused vs the official layers."""
    sam = random_sam(window_size=3, image_size=64)
    block = sam.image_encoder.blocks[block_index].requires_grad_(True)
    fused = FusedBlock(copy.deepcopy(block))
    torch.manual_seed(1)
    x = torch.randn(2, 8, 8, block.attn.qkv.in_features)
    tokens = torch.randn(2, 4, x.shape[-1])
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    results = []
    for blk in (block, fused):
        xi, ti = x.clone().requires_grad_(True), tokens.clone().requires_grad_(True)
        image_out, extra_out = block_attention(blk, xi, ti, mask, windowed=windowed)
        (image_out.square().sum() + extra_out.square().sum()).backward()
        results.append((image_out, extra_out, xi.grad, ti.grad, blk.attn.rel_pos_h.grad, blk.attn.qkv.weight.grad))
    assert isinstance(fused.attn, FusedAttention)
    for official_value, fused_value in zip(*results, strict=True):
        scale = max(1.0, official_value.abs().max().item())
        assert max_diff(fused_value, official_value) <= TOL * scale


def method_cases() -> list:
    """Every registered method with its default options, plus DIT's other attention layout and mode."""
    cases = [(name, {}) for name in METHODS]
    if "dit" in METHODS:
        cases += [("dit", {"attention": "windowed"}), ("dit", {"attention": "windowed", "mode": "e2e"})]
    return cases


CLIP_METHODS = ("clip_guided", "clip_points")  # they read CLIP's image features too: the tiny CLIP, not BERT


def method_module(name, options, checkpoint, bert, fused, clip=None):
    text = {"text_encoder": "bert", "text_options": {"name_or_path": bert}} if METHODS[name].uses_text else {}
    if name in CLIP_METHODS:
        text = {"text_encoder": "clip", "text_options": {"model_cfg": clip[0], "pretrained": clip[1]}}
    eval_prompts = "text" if METHODS[name].uses_text else "points"
    torch.manual_seed(0)
    return SamAdaptModule(method=name, method_options=options, sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=96, fused_attention=fused, eval_prompts=eval_prompts, **text).eval()


def method_batch(size: int = 96) -> dict:
    torch.manual_seed(2)
    return {
        "image": torch.rand(2, 3, size, size) * 255,
        "mask": (torch.rand(2, 1, size, size) > 0.5).float(),
        "points": torch.tensor([[[30.0, 40.0]], [[60.0, 20.0]]]),
        "point_labels": torch.ones(2, 1, dtype=torch.long),
        "box": torch.tensor([[10.0, 10.0, 70.0, 80.0]] * 2),
        "text": ["the red circle on the left", "a square"],
        "content_hw": torch.tensor([[size, size]] * 2),  # random pixels over the whole frame: no letterbox padding
    }


@pytest.mark.parametrize(("name", "options"), method_cases(), ids=lambda v: v if isinstance(v, str) else str(v))
def test_every_method_fused_equals_official(name, options, tiny_sam_checkpoint, tiny_bert, tiny_clip):
    """96 px: a 12x12 grid, so the tiny SAM's 8x8 windows need padding. Trainable weights are randomised
    (zero-initialised branches would hide a wrong path), then copied into the fused model by name."""
    official = method_module(name, options, tiny_sam_checkpoint, tiny_bert, fused=False, clip=tiny_clip)
    fused = method_module(name, options, tiny_sam_checkpoint, tiny_bert, fused=True, clip=tiny_clip)
    with torch.no_grad():
        for p in official.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    fused.load_state_dict(official.state_dict())  # the same names with and without fusion
    batch = method_batch()
    kinds = [next(iter(official.eval_kinds.values()))] * 2
    outputs = []
    for module in (official, fused):
        torch.manual_seed(3)
        low_res, iou = module.model(batch, kinds)
        if low_res.requires_grad:  # clip_points trains nothing: outputs only
            low_res.square().mean().backward()
        grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
        outputs.append((low_res, grads))
    (low_official, grads_official), (low_fused, grads_fused) = outputs
    assert max_diff(low_fused, low_official) <= TOL * max(1.0, low_official.abs().max().item())
    for param_name, grad in grads_official.items():
        if grad is None:
            assert grads_fused[param_name] is None, param_name
            continue
        assert max_diff(grads_fused[param_name], grad) <= TOL * max(1.0, grad.abs().max().item()), param_name


def test_build_sam_option_and_official_default(tiny_sam_checkpoint):
    assert not any(isinstance(b, FusedBlock) for b in build_sam("tiny", tiny_sam_checkpoint).image_encoder.blocks)
    fused = build_sam("tiny", tiny_sam_checkpoint, fused_attention=True)
    assert all(isinstance(b, FusedBlock) for b in fused.image_encoder.blocks)
    assert not any(p.requires_grad for p in fused.parameters())


class ShiftedQkv(torch.nn.Module):
    """Stands in for a method's replacement of qkv (LoRA and the like): no `.bias`, an output of its own."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.shift = torch.nn.Parameter(torch.randn(linear.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.shift


def test_window_padding_follows_a_replaced_qkv():
    """Padding tokens get what the block's qkv module makes of a zero token, whatever that module is."""
    official = random_sam(window_size=3, image_size=64)
    for block in official.image_encoder.blocks:
        block.attn.qkv = ShiftedQkv(block.attn.qkv)
    fused = copy.deepcopy(official)
    use_fused_attention(fused.image_encoder)
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert max_diff(encode_images(fused, images), encode_images(official, images)) <= TOL


def test_matmul_route_gives_sdpas_attention_and_gradients():
    """The route small bf16 windows take (bias by one matmul, baddbmm + softmax + bmm), checked in fp32 where it
    must match SDPA and the broadcast bias to rounding, with text-like extra keys masked out."""
    sam = random_sam(window_size=3, image_size=64)
    attn = FusedAttention(sam.image_encoder.blocks[0].attn)
    torch.manual_seed(2)
    b, heads, hw, d = 2, attn.num_heads, (3, 4), attn.qkv_in_features // attn.num_heads
    q, k, v = (torch.randn(b, heads, 2 + 12, d, requires_grad=True) for _ in range(3))
    bias = rel_pos_bias(attn, q[:, :, 2:], hw)
    assert max_diff(rel_pos_bias(attn, q[:, :, 2:], hw, by_matmul=True), bias) <= 1e-5
    mask = torch.nn.functional.pad(bias, (2, 0, 2, 0))
    mask[0, ..., 1] = float("-inf")  # the first sample's second extra key is padding
    ours = attention_by_matmul(q, k, v, mask, attn.scale)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
    assert max_diff(ours, theirs) <= 1e-5
    grads = [torch.autograd.grad(out.square().sum(), (q, k, v), retain_graph=True) for out in (ours, theirs)]
    assert all(max_diff(a, b) <= 1e-4 for a, b in zip(*grads, strict=True))
