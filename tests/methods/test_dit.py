"""Deep instruction tuning: what holds at initialisation for each attention layout, and what trains."""

import pytest
import torch

from samadapt.methods.injection import wrapped_blocks
from samadapt.sam.loop import encode_images
from samadapt.text import TextFeatures
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE
from tests.training.test_module import assert_text_stays_with_its_samples, tiny_batch

# 128 px: a 16x16 token grid, so the tiny SAM's 8x8 windows are really windows (at 64 px one covers all)
SIZE = 128


def wrappers(module):
    """The encoder blocks the method wrapped, in order."""
    return list(wrapped_blocks(module.model.sam.image_encoder).values())


def dit(checkpoint, bert, size=SIZE, **options):
    return SamAdaptModule(method="dit", method_options=options, sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=size, text_encoder="bert", text_options={"name_or_path": bert})


def frozen(checkpoint):
    return SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=SIZE, eval_prompts="none").model.sam


def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, SIZE, SIZE) * 255


def masked_text(module, texts):
    text = module.model.text_encoder(texts)
    return TextFeatures(text.tokens, torch.zeros_like(text.mask), text.pooled)


@pytest.mark.parametrize("mode", ["layerwise", "e2e"])
def test_windowed_with_masked_tokens_equals_frozen_sam(tiny_sam_checkpoint, tiny_bert, mode):
    module = dit(tiny_sam_checkpoint, tiny_bert, mode=mode, attention="windowed").eval()
    method, sam = module.model.method, module.model.sam
    with torch.no_grad():
        reference = encode_images(frozen(tiny_sam_checkpoint), images())
        with_masked = method.encode(sam, images(), masked_text(module, ["the red circle", "a blue square"]))
        without_text = method.encode(sam, images(), None)
    assert torch.allclose(with_masked, reference, atol=1e-5)
    assert torch.allclose(without_text, reference, atol=1e-5)


def test_global_attention_differs_from_frozen_sam_and_by_how_much(tiny_sam_checkpoint, tiny_bert):
    """Global layout drops SAM's windows, so even masked text leaves a different encoder (stated, not hidden)."""
    module = dit(tiny_sam_checkpoint, tiny_bert, attention="global").eval()
    with torch.no_grad():
        reference = encode_images(frozen(tiny_sam_checkpoint), images())
        out = module.model.method.encode(module.model.sam, images(), masked_text(module, ["x", "y"]))
    rel = ((out - reference).norm() / reference.norm()).item()
    print(f"global vs frozen SAM: relative difference {rel:.3f}")
    assert rel > 1e-3  # the windows are gone: not SAM's function any more


@pytest.mark.parametrize("mask_padding", [True, False])
def test_padding_tokens_masked_or_not(tiny_sam_checkpoint, tiny_bert, mask_padding):
    module = dit(tiny_sam_checkpoint, tiny_bert, mask_padding=mask_padding, token_dropout=0.0).eval()
    with torch.no_grad():
        for source in (w.extra_tokens for w in wrappers(module)):
            source.proj.weight.normal_(std=0.5)  # leave the zero start so text matters
        text = module.model.text_encoder(["red", "the big red circle on the left"])
        out = module.model.method.encode(module.model.sam, images(), text)
        changed = TextFeatures(text.tokens.clone(), text.mask, text.pooled)
        changed.tokens[0, ~text.mask[0]] += 5.0  # edit only the padding of the short sentence
        out2 = module.model.method.encode(module.model.sam, images(), changed)
    assert torch.allclose(out[0], out2[0], atol=1e-5) == mask_padding
    assert torch.allclose(out[1], out2[1], atol=1e-5)


@pytest.mark.parametrize("mode", ["layerwise", "e2e"])
def test_every_projection_learns_and_sam_stays_frozen(tiny_sam_checkpoint, tiny_bert, shapes_root, mode):
    module = dit(tiny_sam_checkpoint, tiny_bert, size=TEST_SIZE, mode=mode)
    batch = tiny_batch(shapes_root, "train")
    loss, _ = module.step_loss(batch, [frozenset({"text"})] * len(batch["text"]))
    loss.backward()
    blocks = wrappers(module)
    assert all(b.extra_tokens.proj.weight.grad is not None and b.extra_tokens.proj.weight.grad.abs().sum() > 0
               for b in blocks[:1])
    for name, p in module.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert not any(".block." in n for n in trainable)  # SAM's own block weights stay frozen
    sources = {type(b.extra_tokens).__name__ + b.extra_tokens.source for b in blocks}
    assert sources == ({"TextTokenSourcetext"} if mode == "layerwise" else {"TextTokenSourcetext",
                                                                              "TextTokenSourceprevious"})


def test_max_tokens_truncates(tiny_sam_checkpoint, tiny_bert):
    module = dit(tiny_sam_checkpoint, tiny_bert, max_tokens=3)
    seen = {}
    block = wrappers(module)[0]
    original = block.extra_tokens.forward
    block.extra_tokens.forward = lambda ctx, x: seen.setdefault("t", original(ctx, x))
    with torch.no_grad():
        module.model.method.encode(module.model.sam, images(), module.model.text_encoder(["a b c d e f", "g"]))
    assert seen["t"][0].shape[1] == 3


def test_mixed_prompts_per_sample(tiny_sam_checkpoint, tiny_bert, shapes_root):
    """A sample prompted by points alone gets no text, even when its batch neighbours have text."""
    module = dit(tiny_sam_checkpoint, tiny_bert, size=TEST_SIZE, attention="windowed").eval()
    with torch.no_grad():
        for source in (w.extra_tokens for w in wrappers(module)):
            source.proj.weight.normal_(std=0.5)
    batch = tiny_batch(shapes_root)
    assert_text_stays_with_its_samples(module, batch, frozenset({"points"}), frozenset({"points", "text"}))


def test_add_decoder_layers_and_trainable_text_encoder(tiny_sam_checkpoint, tiny_bert, shapes_root):
    module = SamAdaptModule(method="add_decoder_layers", method_options={"num_layers": 2}, sam_variant="tiny",
                            sam_checkpoint=tiny_sam_checkpoint, image_size=TEST_SIZE, text_encoder="bert",
                            text_options={"name_or_path": tiny_bert}, train_text_encoder=True)
    assert len(module.model.sam.mask_decoder.transformer.layers) == 4
    batch = tiny_batch(shapes_root, "train")
    loss, _ = module.step_loss(batch, [frozenset({"text"})] * 4)
    loss.backward()
    text_grads = [p.grad for p in module.model.text_encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in text_grads)
    assert module.parameter_counts()["trainable_params"] == module.model.trainable_count


def test_e2e_reprojections_start_as_identity_or_at_zero(tiny_sam_checkpoint, tiny_bert):
    """E-DIT's later blocks re-project the previous block's text: identity by default, zero as the released code."""
    for init, expected in (("identity", torch.eye), ("zero", torch.zeros)):
        blocks = wrappers(dit(tiny_sam_checkpoint, tiny_bert, mode="e2e", reproject_init=init))
        assert blocks[0].extra_tokens.proj.weight.abs().sum() == 0  # the first projection is zero either way
        for block in blocks[1:]:
            weight = block.extra_tokens.proj.weight
            assert torch.equal(weight, expected(*weight.shape)) and block.extra_tokens.proj.bias.abs().sum() == 0


def test_shared_text_projection_is_the_released_vith_parametrisation(tiny_sam_checkpoint, tiny_bert):
    """One Linear(text -> width, default init) on the text, then each block's zero-initialised width x width."""
    module = dit(tiny_sam_checkpoint, tiny_bert, shared_text_projection=True, token_dropout=0.0).eval()
    method, text_dim = module.model.method, module.model.text_encoder.dim
    width = module.model.sam.image_encoder.patch_embed.proj.out_channels
    assert method.text_projection.weight.shape == (width, text_dim) and method.text_projection.weight.abs().sum() > 0
    blocks = wrappers(module)
    assert all(b.extra_tokens.proj.weight.shape == (width, width) for b in blocks)
    assert all(b.extra_tokens.proj.weight.abs().sum() == 0 for b in blocks)
    assert "method.text_projection.weight" in module.model.trainable_state_dict()
    seen = {}
    original = blocks[1].extra_tokens.forward
    blocks[1].extra_tokens.forward = lambda ctx, x: seen.setdefault("tokens", original(ctx, x))
    text = module.model.text_encoder(["the red circle", "a square"])
    with torch.no_grad():
        blocks[1].extra_tokens.proj.weight.normal_(std=0.5)
        module.model.method.encode(module.model.sam, images(), text)
        expected = blocks[1].extra_tokens.proj(method.text_projection(text.tokens))
    assert torch.allclose(seen["tokens"][0], expected, atol=1e-6)


def test_decoder_text_projection_is_one_linear(tiny_sam_checkpoint, tiny_bert):
    """DIT's text reaches the decoder through one Linear(text -> prompt width), as the code's `text_proj`."""
    module = dit(tiny_sam_checkpoint, tiny_bert)
    to_decoder = module.model.method.to_decoder
    assert type(to_decoder) is torch.nn.Linear
    assert to_decoder.weight.shape == (module.model.sam.prompt_encoder.embed_dim, module.model.text_encoder.dim)


@pytest.mark.parametrize("method", ["shallow_fusion", "add_decoder_layers"])
def test_linear_text_projection_is_the_released_default(tiny_sam_checkpoint, tiny_bert, method):
    """projection "linear" with dropout 0: every text token through one Linear(text -> prompt width), nothing else."""
    module = SamAdaptModule(method=method, method_options={"projection": "linear", "dropout": 0.0},
                            sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint, image_size=TEST_SIZE,
                            text_encoder="bert", text_options={"name_or_path": tiny_bert})
    to_prompt = module.model.method.to_prompt
    (linear,) = [m for m in to_prompt.net if isinstance(m, torch.nn.Linear)]
    assert [n for n, _ in to_prompt.named_parameters()] == ["net.0.weight", "net.0.bias"]
    assert linear.weight.shape == (module.model.sam.prompt_encoder.embed_dim, module.model.text_encoder.dim)
    text = module.model.text_encoder(["the red circle"])
    sparse = torch.zeros(1, 0, linear.out_features)
    with torch.no_grad():
        assert torch.allclose(to_prompt.eval().append(sparse, text), linear(text.tokens))
