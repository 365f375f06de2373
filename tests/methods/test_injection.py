"""Block injection: wrapped blocks reproduce frozen SAM at their initial values, and train only what they add."""

import copy

import pytest
import torch
from torch import nn

from samadapt.methods.base import ForwardContext
from samadapt.methods.injection import BlockWrapper, block_attention, wrap_encoder_blocks
from samadapt.methods.layers import Bottleneck
from samadapt.sam import build_sam
from samadapt.sam.loop import encode_images
from tests.conftest import TEST_SIZE


class ConstantTokens(nn.Module):
    """Extra tokens set on the test's context (as DIT's projected text would be)."""

    def forward(self, context, x):
        return context.tokens, context.mask


@pytest.fixture
def sam(tiny_sam_checkpoint):
    return build_sam("tiny", tiny_sam_checkpoint, image_size=TEST_SIZE)


def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, TEST_SIZE, TEST_SIZE) * 255


def wrapped_copy(sam, **wrapper_kwargs):
    model = copy.deepcopy(sam)
    context = ForwardContext()
    wrappers = wrap_encoder_blocks(
        model.image_encoder, lambda i, blk: BlockWrapper(blk, context, **{k: v() for k, v in wrapper_kwargs.items()})
    )
    return model, context, wrappers


def test_wrapped_with_nothing_equals_official(sam):
    model, _, wrappers = wrapped_copy(sam)
    assert len(wrappers) == len(sam.image_encoder.blocks)
    assert {b.window_size for b in sam.image_encoder.blocks} == {0, 8}  # both global and windowed blocks covered
    assert torch.allclose(encode_images(model, images()), encode_images(sam, images()), atol=1e-5)


def test_zero_initialised_parallel_branches_equal_official_then_train(sam):
    dim = sam.image_encoder.blocks[0].attn.qkv.in_features
    model, _, wrappers = wrapped_copy(
        sam, attn_branch=lambda: Bottleneck(dim, 8), mlp_branch=lambda: Bottleneck(dim, 8)
    )
    x = images()
    assert torch.allclose(encode_images(model, x), encode_images(sam, x), atol=1e-5)
    with torch.no_grad():
        for w in wrappers:
            w.mlp_branch.up.weight.normal_()
    out = encode_images(model, x)
    assert not torch.allclose(out, encode_images(sam, x), atol=1e-3)
    model.requires_grad_(False)
    for w in wrappers:
        w.mlp_branch.requires_grad_(True)
    encode_images(model, x).sum().backward()
    assert all(w.mlp_branch.down.weight.grad is not None for w in wrappers)
    assert all(p.grad is None for n, p in model.named_parameters() if "branch" not in n)


def test_masked_extra_tokens_change_nothing(sam):
    """Extra tokens whose keys are all masked leave the image tokens exactly as frozen SAM computes them
    (in the windowed layout; the global layout changes SAM's windowed blocks by design)."""
    model, context, _ = wrapped_copy(sam, extra_tokens=ConstantTokens)
    dim = sam.image_encoder.blocks[0].attn.qkv.in_features
    context.tokens, context.mask = torch.randn(2, 5, dim), torch.zeros(2, 5, dtype=torch.bool)
    x = images()
    assert torch.allclose(encode_images(model, x), encode_images(sam, x), atol=1e-5)
    assert context.extra_out.shape == (2, 5, dim)


def test_extra_tokens_global_vs_windowed(sam):
    block = sam.image_encoder.blocks[0]
    assert block.window_size > 0  # a windowed block of the tiny SAM
    x = torch.randn(2, TEST_SIZE // 8, TEST_SIZE // 8, block.attn.qkv.in_features)
    tokens = torch.randn(2, 3, x.shape[-1])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    win, win_extra = block_attention(block, x, tokens, mask, windowed=True)
    glob, glob_extra = block_attention(block, x, tokens, mask, windowed=False)
    assert win.shape == glob.shape == x.shape and win_extra.shape == glob_extra.shape == tokens.shape
    # a padded (masked) token must not influence anything; changing it changes nothing
    tokens2 = tokens.clone()
    tokens2[0, 2] += 10
    again, _ = block_attention(block, x, tokens2, mask, windowed=False)
    assert torch.allclose(again, glob, atol=1e-5)
    # a real token does influence the image tokens
    tokens2[0, 0] += 10
    changed, _ = block_attention(block, x, tokens2, mask, windowed=False)
    assert not torch.allclose(changed[0], glob[0], atol=1e-4)
