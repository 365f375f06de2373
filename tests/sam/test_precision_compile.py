"""Mixed precision through Lightning's `precision`, fused attention under autocast, and the compile option."""

import copy

import pytest
import torch

from samadapt.cli import main
from samadapt.methods.injection import block_attention
from samadapt.sam.fused_attention import FusedBlock
from samadapt.training.module import SamAdaptModule
from tests.commands.test_cli import configs, tiny_overrides
from tests.sam.test_fused_attention import method_batch, random_sam


def test_bf16_mixed_trains_two_steps(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch):
    """L-DIT (text tokens in every fused block) for 2 steps with precision=bf16-mixed (CPU autocast)."""
    monkeypatch.chdir(tmp_path)
    main(["fit", *configs("demo/ldit"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
          "--trainer.precision=bf16-mixed", "--trainer.logger=false", "--trainer.default_root_dir=out",
          "--model.activation_checkpointing=true"])
    assert list((tmp_path / "out").rglob("last.ckpt"))


@pytest.mark.parametrize("windowed", [True, False])
def test_fused_attention_under_bf16_autocast(windowed):
    """bf16 q/k/v with fp32 rel-pos tables and a key mask: runs, and stays near the fp32 result."""
    sam = random_sam(window_size=3, image_size=64)
    block = FusedBlock(copy.deepcopy(sam.image_encoder.blocks[0]))
    torch.manual_seed(1)
    x = torch.randn(2, 8, 8, block.attn.qkv.in_features)
    tokens = torch.randn(2, 4, x.shape[-1])
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    reference, _ = block_attention(block, x, tokens, mask, windowed=windowed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, extra = block_attention(block, x, tokens, mask, windowed=windowed)
    assert out.dtype == extra.dtype == torch.bfloat16
    assert torch.isfinite(out).all() and torch.isfinite(extra).all()
    assert (out.float() - reference).abs().max() < 0.05 * reference.abs().max()


def test_compile_option_is_wired(tiny_sam_checkpoint):
    module = SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                            image_size=64, eval_prompts="points", compile=True)
    encoder = module.model.sam.image_encoder
    assert encoder._compiled_call_impl is not None  # nn.Module.compile: compiled in place, names unchanged
    assert all(k.startswith("model.") for k in module.state_dict())


@pytest.mark.slow
def test_compiled_encoder_gives_the_same_output(tiny_sam_checkpoint):
    """Runs inductor (a C++ compiler; about a minute on 2 busy CPU cores): make test-all."""
    kwargs = {"method": "decoder_only", "sam_variant": "tiny", "sam_checkpoint": tiny_sam_checkpoint,
              "image_size": 96, "eval_prompts": "points"}
    plain, compiled = SamAdaptModule(**kwargs), SamAdaptModule(**kwargs, compile=True)
    batch = method_batch()
    with torch.no_grad():
        a = plain.model.sam.image_encoder(batch["image"])
        b = compiled.model.sam.image_encoder(batch["image"])
    assert torch.allclose(a, b, atol=1e-4)
