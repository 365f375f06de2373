"""CLIP-Guided SAM: frozen SAM at step 0, what feeds the adapters, what trains, CLIP run once per image."""

import pytest
import torch

from samadapt.errors import SamAdaptError
from samadapt.methods.injection import wrapped_blocks
from samadapt.sam import build_sam
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE
from tests.training.test_module import assert_text_stays_with_its_samples, tiny_batch, unpadded

TEXT, POINTS_TEXT, BOX_TEXT = frozenset({"text"}), frozenset({"points", "text"}), frozenset({"box", "text"})


def wrappers(module):
    """The encoder blocks the method wrapped, in order."""
    return list(wrapped_blocks(module.model.sam.image_encoder).values())


def clip_guided(checkpoint, clip, **options):
    cfg, weights = clip
    return SamAdaptModule(method="clip_guided", method_options=options, sam_variant="tiny",
                          sam_checkpoint=checkpoint, image_size=TEST_SIZE, text_encoder="clip",
                          text_options={"model_cfg": cfg, "pretrained": weights})


def official_low_res(checkpoint, batch, kinds):
    """Low-res logits of the untouched official Sam.forward, prompted with the spatial part of `kinds`."""
    sam = build_sam("tiny", checkpoint, TEST_SIZE)
    inputs = []
    for i in range(len(batch["text"])):
        item = {"image": unpadded(batch, i), "original_size": (TEST_SIZE, TEST_SIZE)}
        if "points" in kinds:
            keep = batch["point_labels"][i] != -1
            item["point_coords"] = batch["points"][i][keep][None]
            item["point_labels"] = batch["point_labels"][i][keep][None]
        if "box" in kinds:
            item["boxes"] = batch["box"][i][None]
        inputs.append(item)
    return torch.cat([out["low_res_logits"] for out in sam(inputs, multimask_output=False)])


@pytest.mark.parametrize("kinds", [TEXT, POINTS_TEXT, BOX_TEXT], ids=["text_only", "points_text", "box_text"])
def test_at_init_equals_official_frozen_sam(tiny_sam_checkpoint, tiny_clip, shapes_root, kinds):
    module = clip_guided(tiny_sam_checkpoint, tiny_clip, position="both").eval()
    batch = tiny_batch(shapes_root)
    with torch.no_grad():
        ours, _ = module.model(batch, [kinds] * len(batch["text"]))
        # the adapters really are in every block and really see CLIP features: only their zero start hides them
        assert all(w.mlp_branch is not None and w.attn_branch is not None for w in wrappers(module))
    assert torch.allclose(ours, official_low_res(tiny_sam_checkpoint, batch, kinds), atol=1e-5)


def perturb(module):
    with torch.no_grad():
        for wrapper in wrappers(module):
            wrapper.mlp_branch.bottleneck.up.weight.normal_(std=0.5)


@pytest.mark.parametrize("features", [["text"], ["text", "vision"], ["text", "vision", "similarity"]])
def test_feature_ablation_sets_what_feeds_the_adapters(tiny_sam_checkpoint, tiny_clip, features):
    module = clip_guided(tiny_sam_checkpoint, tiny_clip, features=features).eval()
    adapter = wrappers(module)[0].mlp_branch
    assert list(adapter.proj) == features
    perturb(module)
    images = torch.rand(2, 3, TEST_SIZE, TEST_SIZE) * 255
    encoder = module.model.text_encoder
    with torch.no_grad():
        a = module.model.method.encode(module.model.sam, images, encoder(["red circle", "red circle"]))
        b = module.model.method.encode(module.model.sam, images, encoder(["blue square", "blue square"]))
        swapped = module.model.method.encode(module.model.sam, images.flip(0), encoder(["red circle"] * 2))
    assert not torch.allclose(a, b, atol=1e-4)  # the sentence reaches the encoder
    assert torch.allclose(swapped.flip(0), a, atol=1e-5)  # per image, no mixing across the batch


def test_clip_features_are_unit_patches_and_their_cosine_on_clips_grid(tiny_sam_checkpoint, tiny_clip):
    """What the adapters read: unit CLIP patch embeddings of the image and their exact cosine with the text."""
    module = clip_guided(tiny_sam_checkpoint, tiny_clip, features=["vision"]).eval()
    method = module.model.method
    images = torch.rand(1, 3, TEST_SIZE, TEST_SIZE) * 255
    text = module.model.text_encoder(["red circle"])
    features = {}
    branch = wrappers(module)[0].mlp_branch
    original = branch.forward
    branch.forward = lambda x, ctx: features.setdefault("clip", ctx.clip) and original(x, ctx)
    with torch.no_grad():
        method.encode(module.model.sam, images, text)
        other = method.clip_vision(images.flip(-1))
    clip = features["clip"]
    assert clip["vision"].shape == (1, 4, 4, 16) and clip["similarity"].shape == (1, 4, 4, 1)  # tiny CLIP: 4x4
    assert torch.allclose(clip["vision"].norm(dim=-1), torch.ones(1, 4, 4), atol=1e-5)
    assert not torch.allclose(clip["vision"], torch.nn.functional.normalize(other, dim=-1), atol=1e-3)
    cosine = (clip["vision"] * clip["text"][:, None, None]).sum(-1, keepdim=True)
    assert torch.allclose(clip["similarity"], cosine, atol=1e-6)


def test_adapter_projects_on_clips_grid_exactly_as_on_sams():
    """Projecting a spatial feature and then resampling it equals resampling and then projecting (to 1e-5)."""
    from samadapt.methods.base import ForwardContext
    from samadapt.methods.clip_guided.layers import SemanticAdapter
    from samadapt.text.clip_vision import resample_to_grid

    torch.manual_seed(0)
    adapter = SemanticAdapter(width=32, clip_dim=16, hidden=8, features=("text", "vision", "similarity"))
    torch.nn.init.normal_(adapter.bottleneck.up.weight)
    x = torch.randn(2, 8, 8, 32)
    clip = {"text": torch.randn(2, 16), "vision": torch.randn(2, 3, 3, 16), "similarity": torch.randn(2, 3, 3, 1)}
    with torch.no_grad():
        ours = adapter(x, ForwardContext(clip=clip))
        bottleneck = adapter.bottleneck
        hidden = bottleneck.down(x) + adapter.proj["text"](clip["text"])[:, None, None]
        for name in ("vision", "similarity"):
            hidden = hidden + adapter.proj[name](resample_to_grid(clip[name], (8, 8)))
        reference = bottleneck.up(bottleneck.act(hidden)) * bottleneck.scale
    assert torch.allclose(ours, reference, atol=1e-5)


def test_trains_adapters_and_decoder_only(tiny_sam_checkpoint, tiny_clip, shapes_root):
    module = clip_guided(tiny_sam_checkpoint, tiny_clip)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert all(n.startswith(("model.sam.mask_decoder.", "model.sam.image_encoder.blocks.")) for n in trainable)
    assert not any(".block." in n or "clip_vision" in n or "text_encoder" in n for n in trainable)
    perturb(module)
    batch = tiny_batch(shapes_root, "train")
    loss, _ = module.step_loss(batch, [TEXT] * len(batch["text"]))
    loss.backward()
    for name, p in module.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    proj = wrappers(module)[0].mlp_branch.proj
    assert all(layer.weight.grad.abs().sum() > 0 for layer in proj.values())


def test_clip_runs_once_per_image_key(tiny_sam_checkpoint, tiny_clip, shapes_root):
    module = clip_guided(tiny_sam_checkpoint, tiny_clip).eval()
    vision = module.model.method.clip_vision
    calls = []
    original = vision._encode
    vision._encode = lambda images: calls.append(len(images)) or original(images)
    batch = tiny_batch(shapes_root)
    keys = batch["image_key"]
    with torch.no_grad():
        first, _ = module.model(batch, [TEXT] * len(keys))
        second, _ = module.model(batch, [TEXT] * len(keys))
        batch["image_key"] = [None] * len(keys)  # random pixels: never cached
        third, _ = module.model(batch, [TEXT] * len(keys))
    # each new image alone (its features must not depend on its batch: exact resume), none again in the second
    # pass (every image was in the cache), the key-less ones in one call
    assert calls == [1] * len(keys) + [len(keys)]
    assert torch.allclose(first, second) and torch.allclose(first, third)


def test_sample_without_text_gets_no_text_features(tiny_sam_checkpoint, tiny_clip, shapes_root):
    module = clip_guided(tiny_sam_checkpoint, tiny_clip, features=["text", "similarity"]).eval()
    perturb(module)
    batch = tiny_batch(shapes_root)
    assert_text_stays_with_its_samples(module, batch, frozenset({"points"}), POINTS_TEXT)


def test_needs_a_clip_text_encoder_and_known_features(tiny_sam_checkpoint, tiny_clip, tiny_bert):
    with pytest.raises(SamAdaptError, match="text_encoder: clip"):
        SamAdaptModule(method="clip_guided", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                       image_size=TEST_SIZE, text_encoder="bert", text_options={"name_or_path": tiny_bert})
    with pytest.raises(SamAdaptError, match="features"):
        clip_guided(tiny_sam_checkpoint, tiny_clip, features=["text", "depth"])


def test_eval_prompts_never_trained_on_log_a_warning(tiny_sam_checkpoint, caplog):
    def build(train, evaluate):
        caplog.clear()
        with caplog.at_level("WARNING", logger="samadapt.training.module"):
            SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                           image_size=TEST_SIZE, train_prompts=train, eval_prompts=evaluate)
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    # Manual-mode training, Semi-Automatic evaluation: the paper's inconsistent pairing
    warned = build({"points+text": 0.5, "box+text": 0.5}, ["text+points", "text"])
    assert len(warned) == 1 and "'text'" in warned[0] and "never used in training" in warned[0]
    assert len(build({"text": 1.0, "points": 0.0}, "points")) == 1  # a zero weight is never drawn
    assert build({"text": 1.0, "points+box": 1.0}, ["text", "box+points"]) == []


@pytest.mark.parametrize("features", ["[text]", "[text,vision]"])
def test_feature_ablation_from_the_experiment_file_and_shell(features, tiny_sam_checkpoint, tiny_clip, tiny_bert,
                                                             shapes_root, tiny_layouts, tmp_path, monkeypatch):
    from samadapt.training.cli import SamAdaptCLI
    from tests.commands.test_cli import configs, tiny_overrides

    monkeypatch.chdir(tmp_path)
    coco = tiny_layouts["data_modules.CocoLowDataDataModule"]
    tiny = tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, data_root=coco, clip=tiny_clip)
    cli = SamAdaptCLI(args=[*configs("coco_1_512/clip_guided_textonly"), *tiny,
                            f"--model.method_options.features={features}", "--trainer.logger=false"], run=False)
    method = cli.model.model.method
    assert list(wrappers(cli.model)[0].mlp_branch.proj) == features.strip("[]").split(",")
    assert method.position == "mlp" and cli.model.hparams.eval_prompts == "text"  # the rest from the YAML
