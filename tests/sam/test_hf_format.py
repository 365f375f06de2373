"""SAM weights in the Hugging Face SamModel format load wherever an official checkpoint does, and
`samadapt convert-sam` writes them as the official .pth: segment_anything's own classes built with those weights
give the SamModel's image embeddings and masks.

A small random SamModel at 1024 px (patch 16, width 64, two blocks) keeps it to seconds; the slow test is ViT-B.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from segment_anything import SamPredictor, sam_model_registry
from transformers import SamConfig as HfSamConfig
from transformers import SamModel

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.sam import build_sam, load_sam_state_dict
from samadapt.sam.config import SAM_CONFIGS
from samadapt.sam.hf_format import random_sam_model
from tests.inference.test_sam_parity import SMALL_1024, official_small_sam, write_image

SMALL_HF = {
    "vision_config": {"hidden_size": 64, "output_channels": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "global_attn_indexes": [1], "window_size": 8, "num_pos_feats": 32},
    "prompt_encoder_config": {"hidden_size": 64},
    # segment_anything's TwoWayTransformer norms use nn.LayerNorm's 1e-5; SamModel's config 1e-6 (measured here: low-res
    # logits 8.4e-5 apart with 1e-6, 1.3e-6 with 1e-5). The weights are the same; the official classes keep 1e-5.
    "mask_decoder_config": {"hidden_size": 64, "mlp_dim": 128, "num_attention_heads": 2, "iou_head_hidden_dim": 64,
                            "layer_norm_eps": 1e-5},
}
# point+box prompts in pixels of the 333 x 517 test image
POINTS, LABELS, BOX = np.array([[260.0, 170.0], [100.0, 300.0]]), np.array([1, 0]), np.array([150, 90, 420, 280.0])


def compare(hf_model: SamModel, official, rgb: np.ndarray) -> dict[str, float]:
    """Largest differences of the image embedding, the 3 low-res masks and their IoU scores for a point+box prompt."""
    predictor = SamPredictor(official)
    predictor.set_image(rgb)  # resize, normalise, pad: the pixel values SamModel takes as they are
    resized = torch.as_tensor(predictor.transform.apply_image(rgb)).permute(2, 0, 1)[None].float()
    pixels = official.preprocess(resized)
    with torch.no_grad():
        hf_embedding = hf_model.get_image_embeddings(pixels)
        _, scores, low_res = predictor.predict(POINTS, LABELS, BOX, multimask_output=True, return_logits=True)
        hw = rgb.shape[:2]
        out = hf_model(image_embeddings=hf_embedding,
                       input_points=torch.tensor(predictor.transform.apply_coords(POINTS, hw))[None, None].float(),
                       input_labels=torch.tensor(LABELS)[None, None],
                       input_boxes=torch.tensor(predictor.transform.apply_boxes(BOX, hw)).float()[None],
                       multimask_output=True)
    return {"embedding": float((hf_embedding - predictor.features).abs().max()),
            "masks": float(np.abs(out.pred_masks[0, 0].numpy() - low_res).max()),
            "scores": float(np.abs(out.iou_scores[0, 0].numpy() - scores).max()),
            "mask scale": float(np.abs(low_res).max())}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "sam-small"
    random_sam_model(HfSamConfig(**SMALL_HF), seed=3).save_pretrained(folder)
    return folder


def test_converted_samModel_gives_its_embeddings_and_masks(hf_folder, tmp_path):
    out = tmp_path / "small_sam.pth"
    main(["convert-sam", str(hf_folder), str(out)])
    official = official_small_sam(SMALL_1024)
    official.load_state_dict(torch.load(out, map_location="cpu", weights_only=True))  # strict: every key, no extra
    diffs = compare(SamModel.from_pretrained(hf_folder).eval(), official, write_image(tmp_path / "photo.jpg"))
    print(diffs)
    assert diffs["embedding"] < 1e-4 and diffs["masks"] < 1e-4 and diffs["scores"] < 1e-4, diffs
    assert diffs["mask scale"] > 0.1, "masks with something to get wrong"


def test_every_checkpoint_option_takes_the_hf_format(hf_folder, tmp_path, monkeypatch):
    """The folder, its model.safetensors and a pytorch_model.bin all load as the official state dict; build_sam
    (model.sam_checkpoint, segment/serve --sam-checkpoint, from_export) takes them directly."""
    main(["convert-sam", str(hf_folder), str(tmp_path / "official.pth")])
    official = torch.load(tmp_path / "official.pth", weights_only=True)
    hf_state = SamModel.from_pretrained(hf_folder).state_dict()
    torch.save(hf_state, tmp_path / "pytorch_model.bin")
    for source in (hf_folder, hf_folder / "model.safetensors", tmp_path / "pytorch_model.bin"):
        state = load_sam_state_dict(source)
        assert set(state) == set(official) and all(torch.equal(state[k], official[k]) for k in official), source
    monkeypatch.setitem(SAM_CONFIGS, "small_1024", SMALL_1024)
    sam = build_sam("small_1024", str(hf_folder))
    assert all(torch.equal(v, official[k]) for k, v in sam.state_dict().items())


def test_neither_format_is_refused_naming_the_file(tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(SamAdaptError, match=r"other\.safetensors is not a SAM state dict.*Hugging Face SamModel"):
        load_sam_state_dict(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main(["convert-sam", str(tmp_path / "empty"), str(tmp_path / "out.pth")])
    assert "empty is a folder" in capsys.readouterr().err and not (tmp_path / "out.pth").exists()
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(SamAdaptError, match="model.safetensors cannot be read as safetensors"):
        load_sam_state_dict(broken)


@pytest.mark.slow
def test_vit_b_samModel_converts_to_segment_anythings_vit_b(tmp_path):
    folder = tmp_path / "sam-vit-b"
    vit_b = HfSamConfig(mask_decoder_config={"layer_norm_eps": 1e-5})  # ViT-B, with the official decoder eps
    random_sam_model(vit_b, seed=5).save_pretrained(folder)
    main(["convert-sam", str(folder), str(tmp_path / "sam_vit_b.pth")])
    official = sam_model_registry["vit_b"](checkpoint=str(tmp_path / "sam_vit_b.pth")).eval()
    diffs = compare(SamModel.from_pretrained(folder).eval(), official, write_image(tmp_path / "photo.jpg"))
    print(f"ViT-B SamModel vs converted: {diffs}")
    assert diffs["embedding"] < 1e-4 and diffs["masks"] < 1e-4 and diffs["scores"] < 1e-4, diffs
