"""The baselines CLIP-Guided SAM is compared with: LoRA (through peft) and CLIP peaks -> points for frozen SAM."""

import pytest
import torch

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.methods.clip_points import content_extent, peak_points
from samadapt.sam.preprocess import content_sizes
from samadapt.training.module import SamAdaptModule
from tests.commands.test_cli import configs, tiny_overrides
from tests.conftest import TEST_SIZE
from tests.methods.test_clip_guided import official_low_res
from tests.training.test_module import tiny_batch

POINTS, TEXT = frozenset({"points"}), frozenset({"text"})


def lora(checkpoint, **options):
    return SamAdaptModule(method="lora", method_options=options, sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=TEST_SIZE, train_prompts={"points": 1.0}, eval_prompts="points")


def test_lora_starts_as_frozen_sam_and_trains_only_lora_and_decoder(tiny_sam_checkpoint, shapes_root):
    module = lora(tiny_sam_checkpoint, r=2)
    batch = tiny_batch(shapes_root)
    with torch.no_grad():
        ours, _ = module.eval().model(batch, [POINTS] * len(batch["text"]))
    assert torch.allclose(ours, official_low_res(tiny_sam_checkpoint, batch, POINTS), atol=1e-5)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n or n.startswith("model.sam.mask_decoder.") for n in trainable)
    lora_names = {n for n in trainable if ".lora_" in n}
    assert len(lora_names) == 2 * len(module.model.sam.image_encoder.blocks)  # A and B on every qkv
    assert all(".attn.qkv." in n for n in lora_names)
    loss, _ = module.train().step_loss(tiny_batch(shapes_root, "train"), [POINTS] * 4)
    loss.backward()
    for name, p in module.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert module.model.sam.image_encoder.blocks[0].attn.qkv.lora_B["default"].weight.grad.abs().sum() > 0


def test_lora_targets_that_match_nothing_are_a_clear_error(tiny_sam_checkpoint):
    with pytest.raises(SamAdaptError, match="target_modules"):
        lora(tiny_sam_checkpoint, target_modules=["no_such_layer"])


def test_peaks_become_points_inside_the_image():
    sim = torch.zeros(8, 8)
    sim[2, 5] = 0.9   # the strongest peak, inside
    sim[1, 1] = 0.5   # a second peak
    sim[7, 7] = 1.0   # strongest of all, but in the letterbox padding (content is 48 px high)
    sim[3, 0] = -0.8
    points, labels = peak_points(sim, 64, (0, 0, 48, 64), positives=2, negatives=1)
    assert labels.tolist() == [1, 1, 0]
    assert points.tolist() == [[44.0, 20.0], [12.0, 12.0], [4.0, 28.0]]  # cell centres, xy, in the 64 px frame
    mean = torch.tensor([123.675, 116.28, 103.53])  # SAM's pixel mean: the letterbox padding the model sees
    image = mean.reshape(1, 3, 1, 1).repeat(1, 1, 64, 64)
    image[0, :, :48, :40] = 0.0  # black content must count as content
    assert content_extent(image, mean) == [(0, 0, 48, 40)]


def clip_points(checkpoint, clip, **options):
    cfg, weights = clip
    return SamAdaptModule(method="clip_points", method_options=options, sam_variant="tiny",
                          sam_checkpoint=checkpoint, image_size=TEST_SIZE, text_encoder="clip",
                          text_options={"model_cfg": cfg, "pretrained": weights}, eval_prompts="text")


def test_clip_points_is_frozen_sam_prompted_at_the_clip_peaks(tiny_sam_checkpoint, tiny_clip, shapes_root):
    module = clip_points(tiny_sam_checkpoint, tiny_clip).eval()
    assert module.parameter_counts()["trainable_params"] == 0
    batch = tiny_batch(shapes_root)
    placed = []
    original = module.model.method.prompt_embeddings

    def spy(sam, sparse, dense, text, image_embedding):
        placed.append(module.model.method.context.points[0])
        return original(sam, sparse, dense, text, image_embedding)

    module.model.method.prompt_embeddings = spy
    with torch.no_grad():
        ours, _ = module.model(batch, [TEXT] * len(batch["text"]))
    assert all(p is not None and p[1].tolist() == [1] for p in placed)
    for (points, _), (h, w) in zip(placed, content_sizes(batch, TEST_SIZE).tolist(), strict=True):
        assert (points[:, 0] < w).all() and (points[:, 1] < h).all()  # inside the image, never in its padding
    prompted = {**batch, "points": torch.stack([p[0] for p in placed]),
                "point_labels": torch.stack([p[1] for p in placed])}
    assert torch.allclose(ours, official_low_res(tiny_sam_checkpoint, prompted, POINTS), atol=1e-5)


def test_clip_points_validates_without_fit_and_refuses_fit(tiny_sam_checkpoint, tiny_clip, shapes_root,
                                                           tiny_bert, tiny_layouts, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    coco = tiny_layouts["data_modules.CocoLowDataDataModule"]
    args = [*configs("coco_1_512/clip_points"),
            *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, data_root=coco, clip=tiny_clip),
            "--trainer.logger=false"]
    main(["validate", *args])
    assert "val/oIoU" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2 and "samadapt validate" in capsys.readouterr().err


def test_clip_points_finds_centred_content():
    """The CLIP peaks only fall inside the image content, wherever the letterbox placed it."""
    import torch

    from samadapt.methods.clip_points import content_extent, peak_points

    mean = torch.tensor([123.675, 116.28, 103.53])
    images = mean.reshape(1, 3, 1, 1).repeat(1, 1, 64, 64)
    images[:, :, 16:48, :] = 10.0  # a wide image centred vertically: rows 16..47 hold content
    assert content_extent(images, mean) == [(16, 0, 48, 64)]
    sim = torch.zeros(8, 8)
    sim[0, 3] = sim[7, 5] = 5.0  # peaks in the padding above and below
    sim[3, 2] = 1.0  # a weaker one inside
    points, labels = peak_points(sim, 64, (16, 0, 48, 64), positives=1, negatives=0)
    assert labels.tolist() == [1] and 16 <= points[0, 1] < 48
