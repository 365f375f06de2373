"""The frozen SAM core: official-format checkpoints, errors, resizing, and our path vs the official one."""

import os

import pytest
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry

from samadapt.errors import MissingFileError, SamAdaptError, UnsafeFileError
from samadapt.sam import build_sam, load_sam_state_dict, save_sam_checkpoint
from samadapt.sam.checkpoint import identify_variant
from samadapt.sam.loop import decode, embed_prompts, encode_images
from tests.conftest import TEST_SIZE


def test_official_builder_checkpoint_loads_at_1024_and_512(tmp_path):
    """A file saved from segment-anything's own ViT-B builder loads through our loader, also resized to 512."""
    official = sam_model_registry["vit_b"]()
    assert sum(p.numel() for p in official.parameters()) == 93_735_472  # ViT-B: 93.7M as published
    with torch.no_grad():  # rel_pos is zero-initialised; give it structure so the resize is visible
        official.image_encoder.blocks[2].attn.rel_pos_h.normal_()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(official.state_dict(), path)

    assert identify_variant(load_sam_state_dict(path)) == "vit_b"
    ours = build_sam("vit_b", str(path))
    for (name, a), b in zip(official.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in ours.parameters())

    at512 = build_sam("vit_b", str(path), image_size=512)
    assert at512.image_encoder.pos_embed.shape == (1, 32, 32, 768)
    glob = at512.image_encoder.blocks[2].attn  # a global-attention block: its tables follow the grid
    assert glob.rel_pos_h.shape == (63, 64)
    expected = F.interpolate(official.image_encoder.blocks[2].attn.rel_pos_h.t()[None], 63, mode="linear")[0].t()
    assert torch.allclose(glob.rel_pos_h, expected)
    assert at512.image_encoder.blocks[0].attn.rel_pos_h.shape == (27, 64)  # windowed: 14x14 windows, unchanged
    assert at512.prompt_encoder.image_embedding_size == (32, 32)


def test_tiny_roundtrip_is_official_format(tiny_sam_checkpoint, tmp_path):
    sam = build_sam("tiny", tiny_sam_checkpoint)
    again = tmp_path / "again.pth"
    save_sam_checkpoint(sam, again)
    plain = torch.load(again, weights_only=True)  # exactly what Meta's files are: a dict of tensors
    assert all(isinstance(v, torch.Tensor) for v in plain.values())
    for key, value in sam.state_dict().items():
        assert torch.equal(plain[key], value), key


def test_resized_tiny_runs_at_test_size(tiny_sam_checkpoint):
    sam = build_sam("tiny", tiny_sam_checkpoint, image_size=TEST_SIZE)
    out = encode_images(sam, torch.rand(2, 3, TEST_SIZE, TEST_SIZE) * 255)
    assert out.shape == (2, 64, TEST_SIZE // 8, TEST_SIZE // 8)
    original = load_sam_state_dict(tiny_sam_checkpoint)["image_encoder.pos_embed"]
    resized = sam.image_encoder.pos_embed
    expected = F.interpolate(original.permute(0, 3, 1, 2), size=(8, 8), mode="bicubic").permute(0, 2, 3, 1)
    assert torch.allclose(resized, expected)


def test_missing_checkpoint_names_path_and_download():
    with pytest.raises(MissingFileError) as err:
        build_sam("vit_b", "checkpoints/nope/sam_vit_b_01ec64.pth")
    msg = str(err.value)
    assert "checkpoints/nope/sam_vit_b_01ec64.pth" in msg and "sam_vit_b_01ec64.pth" in msg and "Download" in msg


def test_not_a_sam_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3)}, path)
    with pytest.raises(SamAdaptError, match="not a SAM state dict"):
        load_sam_state_dict(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(SamAdaptError, match="cannot be read as a PyTorch checkpoint"):
        load_sam_state_dict(garbage)


def test_checkpoint_of_another_variant_says_which(tiny_sam_checkpoint):
    with pytest.raises(SamAdaptError, match=r"looks like a tiny checkpoint.*sam_variant=tiny"):
        build_sam("vit_b", tiny_sam_checkpoint)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file when unpickled


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": _RunsCode(str(marker))}, path)
    with pytest.raises(UnsafeFileError, match="evil.pth"):
        load_sam_state_dict(path)
    assert not marker.exists()


def _official_outputs(sam, image, points=None, labels=None, box=None):
    record = {"image": image, "original_size": image.shape[-2:]}
    if points is not None:
        record.update(point_coords=points[None], point_labels=labels[None])
    if box is not None:
        record["boxes"] = box[None]
    return sam([record], multimask_output=False)[0]


@pytest.mark.parametrize("prompt", ["points", "box", "points+box"])
def test_training_path_equals_official_sam_forward(tiny_sam_checkpoint, prompt):
    sam = build_sam("tiny", tiny_sam_checkpoint, image_size=TEST_SIZE)
    torch.manual_seed(0)
    image = torch.rand(3, TEST_SIZE, TEST_SIZE) * 255
    points = torch.tensor([[10.0, 12.0], [40.0, 30.0]]) if "points" in prompt else None
    labels = torch.tensor([1, 0]) if "points" in prompt else None
    box = torch.tensor([5.0, 6.0, 50.0, 44.0]) if "box" in prompt else None
    official = _official_outputs(sam, image, points, labels, box)

    embedding = encode_images(sam, image[None])
    if points is not None:  # a collate-padded point list must give the same answer
        points = torch.cat([points, torch.zeros(1, 2)])
        labels = torch.cat([labels, torch.tensor([-1])])
    sparse, dense = embed_prompts(sam, points, labels, box)
    low_res, iou = decode(sam, embedding, sparse, dense)
    assert torch.allclose(low_res, official["low_res_logits"], atol=1e-5)
    assert torch.allclose(iou, official["iou_predictions"], atol=1e-5)


def test_unknown_variant_lists_choices():
    with pytest.raises(SamAdaptError, match="vit_b"):
        build_sam("vit_x")


@pytest.mark.slow
def test_real_vit_b_checkpoint_if_present():
    path = os.environ.get("SAM_VIT_B", "checkpoints/sam_vit_b_01ec64.pth")
    if not os.path.exists(path):
        pytest.skip(f"no official checkpoint at {path}")
    sam = build_sam("vit_b", path, image_size=512)
    assert encode_images(sam, torch.zeros(1, 3, 512, 512)).shape == (1, 256, 32, 32)
