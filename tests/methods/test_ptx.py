"""SAM-PTx and the parallel adapter: step 0 is frozen SAM (official code path), text matters once trained,
gradients reach only the declared parts, class embeddings are computed once per class."""

import pytest
import torch

from samadapt.errors import SamAdaptError
from samadapt.model import SamAdaptModel
from samadapt.sam import build_sam
from samadapt.text import TextFeatures
from tests.conftest import TEST_SIZE

VARIANTS = {
    "adapter_mlp": ("parallel_adapter", {}),
    "adapter_mlp_mhsa": ("parallel_adapter", {"placement": "mlp+mhsa", "blocks": [0, 2]}),
    "ptx_encoder": ("sam_ptx", {}),
    "ptx_mlp_mhsa": ("sam_ptx", {"placement": "mlp+mhsa", "text_into": "mlp+mhsa"}),
    "ptx_shared_projection": ("sam_ptx", {"text_projection": "shared", "placement": "mlp+mhsa"}),
    "ptx_prompt": ("sam_ptx", {"inject": "prompt"}),
    "ptx_decoder": ("sam_ptx", {"inject": "decoder"}),
}
TEXTS = ["a photo of a circle", "a photo of a square"]


def build(method, options, checkpoint, clip):
    torch.manual_seed(0)
    uses_text = method == "sam_ptx"
    # SAM's own attention, so "step 0 equals frozen SAM" is exact (fused attention's parity: test_fused_attention)
    return SamAdaptModel(sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE, method=method,
                         method_options=options, text_encoder="clip" if uses_text else None,
                         text_options={"model_cfg": clip[0], "pretrained": clip[1]} if uses_text else None,
                         fused_attention=False)


def make_batch():
    gen = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(2, 3, TEST_SIZE, TEST_SIZE, generator=gen) * 255,
        "points": torch.rand(2, 5, 2, generator=gen) * TEST_SIZE,
        "point_labels": torch.ones(2, 5, dtype=torch.long),
        "box": torch.tensor([[4.0, 4, 40, 40], [10, 8, 60, 50]]),
        "text": TEXTS,
        "content_hw": torch.tensor([[TEST_SIZE, TEST_SIZE]] * 2),  # random pixels over the whole frame: no padding
    }


def official(sam, batch):
    """segment_anything's own Sam.forward (preprocess, encoder, prompt encoder, decoder, postprocess)."""
    inputs = [{"image": batch["image"][i], "original_size": (TEST_SIZE, TEST_SIZE),
               "point_coords": batch["points"][i][None], "point_labels": batch["point_labels"][i][None]}
              for i in range(2)]
    outputs = sam(inputs, multimask_output=False)
    embeddings = sam.image_encoder(torch.stack([sam.preprocess(x["image"]) for x in inputs]))
    return embeddings, outputs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_step_zero_is_frozen_sam_exactly(variant, tiny_sam_checkpoint, tiny_clip):
    method, options = VARIANTS[variant]
    model = build(method, options, tiny_sam_checkpoint, tiny_clip).eval()
    frozen = build_sam("tiny", tiny_sam_checkpoint, image_size=TEST_SIZE)
    batch = make_batch()
    with torch.no_grad():
        ref_embeddings, ref = official(frozen, batch)
        text = model.encode_text(batch["text"])
        embeddings = model.method.encode(model.sam, batch["image"], text)
        low_res, iou = model(batch, [frozenset({"points", "text"})] * 2)
    assert torch.equal(embeddings, ref_embeddings)
    assert torch.equal(low_res, torch.cat([o["low_res_logits"] for o in ref]))
    assert torch.equal(iou, torch.cat([o["iou_predictions"] for o in ref]))
    assert torch.equal(model.upsample(low_res) > 0, torch.cat([o["masks"] for o in ref]))


def perturb_adapters(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and ("bottleneck.up" in name or "text_proj" in name):
                p.normal_(0, 0.05)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_reach_only_declared_parts(variant, tiny_sam_checkpoint, tiny_clip):
    method, options = VARIANTS[variant]
    model = build(method, options, tiny_sam_checkpoint, tiny_clip)
    declared = model.method.trainable_modules(model.sam)
    assert "sam.mask_decoder" in declared
    adapters = [n for n in declared if "_branch" in n]
    blocks = options.get("blocks", range(len(model.sam.image_encoder.blocks)))
    assert len(adapters) == len(blocks) * (2 if options.get("placement") == "mlp+mhsa" else 1)
    perturb_adapters(model)
    low_res, iou = model(make_batch(), [frozenset({"points", "text"})] * 2)
    (low_res.sum() + iou.sum()).backward()
    got_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert got_grad <= trainable
    assert all(n.startswith(("sam.mask_decoder", "method.")) or "_branch." in n for n in trainable)
    assert {n for n in trainable if "bottleneck" in n or "text_proj" in n} <= got_grad  # every new weight learns
    assert not any(n.startswith(("sam.image_encoder.blocks.0.block", "sam.prompt_encoder", "text_encoder"))
                   for n in trainable)


def test_text_reaches_encoder_only_through_mlp_adapters_by_default(tiny_sam_checkpoint, tiny_clip):
    model = build("sam_ptx", {}, tiny_sam_checkpoint, tiny_clip)
    block = model.sam.image_encoder.blocks[0]
    assert block.attn_branch is None and block.mlp_branch.text_proj is not None
    both = build("sam_ptx", {"placement": "mlp+mhsa"}, tiny_sam_checkpoint, tiny_clip).sam.image_encoder.blocks[0]
    assert both.attn_branch.text_proj is None and both.mlp_branch.text_proj is not None
    shared = build("sam_ptx", {"text_projection": "shared"}, tiny_sam_checkpoint, tiny_clip).sam.image_encoder.blocks
    assert shared[0].mlp_branch.text_proj is shared[-1].mlp_branch.text_proj
    assert block.mlp_branch.text_proj is not model.sam.image_encoder.blocks[-1].mlp_branch.text_proj
    elsewhere = build("sam_ptx", {"inject": "decoder"}, tiny_sam_checkpoint, tiny_clip)
    assert elsewhere.sam.image_encoder.blocks[0].mlp_branch.text_proj is None
    assert elsewhere.method.text_proj is not None


@pytest.mark.parametrize("inject", ["encoder", "prompt", "decoder"])
def test_class_text_changes_the_mask_once_trained(inject, tiny_sam_checkpoint, tiny_clip):
    model = build("sam_ptx", {"inject": inject, "scale": 1.0}, tiny_sam_checkpoint, tiny_clip).eval()
    perturb_adapters(model)
    batch = make_batch()
    kinds = [frozenset({"points", "text"})] * 2
    with torch.no_grad():
        a, _ = model(batch, kinds)
        b, _ = model({**batch, "text": TEXTS[::-1]}, kinds)
        no_text, _ = model(batch, [frozenset({"points"})] * 2)
        mixed, _ = model(batch, [frozenset({"points", "text"}), frozenset({"points"})])
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(mixed[0], a[0], atol=1e-5)  # a sample prompted without text sees no text at all
    assert torch.allclose(mixed[1], no_text[1], atol=1e-5)


def test_class_embeddings_are_computed_once_per_class(tiny_sam_checkpoint, tiny_clip, monkeypatch):
    model = build("sam_ptx", {}, tiny_sam_checkpoint, tiny_clip)
    encoder, calls = model.text_encoder, []
    original = encoder._encode_batch
    monkeypatch.setattr(encoder, "_encode_batch", lambda texts: calls.append(list(texts)) or original(texts))
    batch = make_batch()
    for texts in (TEXTS, TEXTS[::-1], [TEXTS[0], TEXTS[0]]):
        model({**batch, "text": texts}, [frozenset({"points", "text"})] * 2)
    assert sorted(t for call in calls for t in call) == sorted(TEXTS)
    assert encoder.cache_info()["size"] == 2
    assert model.embedding_cache is None  # conditions_encoder: no image-embedding reuse


@pytest.mark.parametrize("options", [{"blocks": [9]}, {"placement": "attn"}, {"width": 0}, {"inject": "neck"},
                                     {"text_into": "mlp+mhsa"}, {"blocks": []},
                                     {"text_projection": "each"}, {"inject": "prompt", "act": "relu"}])
def test_bad_options_are_one_clear_error(options, tiny_sam_checkpoint, tiny_clip):
    with pytest.raises(SamAdaptError):
        build("sam_ptx", options, tiny_sam_checkpoint, tiny_clip)


def test_sam_ptx_without_text_encoder_is_clear(tiny_sam_checkpoint):
    with pytest.raises(SamAdaptError, match="text_encoder"):
        SamAdaptModel(sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint, image_size=TEST_SIZE, method="sam_ptx")


def test_text_gate_matches_no_text(tiny_sam_checkpoint, tiny_clip):
    model = build("sam_ptx", {"scale": 1.0}, tiny_sam_checkpoint, tiny_clip).eval()
    perturb_adapters(model)
    images = make_batch()["image"]
    with torch.no_grad():
        text = model.encode_text(TEXTS)
        hidden = TextFeatures(text.tokens, torch.zeros_like(text.mask), text.pooled)
        assert torch.equal(model.method.encode(model.sam, images, hidden), model.method.encode(model.sam, images, None))
