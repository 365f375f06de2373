"""Checkpoints made before the 0.2 restructuring still load: every method's trainable weights keep their names
and their order (the optimizer state of a resumed run is matched to the parameters by position).

checkpoint_keys.json holds each variant's `trainable_state_dict()` keys as commit 477f79a produced them, with the
tiny SAM's mask-decoder keys written once, as "@mask_decoder".
"""

import json
from pathlib import Path

import pytest

from samadapt.model import SamAdaptModel
from tests.conftest import TEST_SIZE

EXPECTED = json.loads((Path(__file__).parent / "checkpoint_keys.json").read_text())
VARIANTS = {  # name: (method, method_options, text encoder, other model arguments)
    "decoder_only": ("decoder_only", {}, None, {}),
    "full": ("full", {}, None, {}),
    "shallow_fusion": ("shallow_fusion", {}, "bert", {}),
    "shallow_fusion+train_encoders": ("shallow_fusion", {}, "bert",
                                      {"train_image_encoder": True, "train_text_encoder": True}),
    "add_decoder_layers": ("add_decoder_layers", {"num_layers": 2}, "bert", {}),
    "dit_layerwise": ("dit", {}, "bert", {}),
    "dit_e2e": ("dit", {"mode": "e2e"}, "bert", {}),
    "dit_no_decoder_tokens": ("dit", {"decoder_tokens": False, "attention": "windowed"}, "bert", {}),
    "parallel_adapter": ("parallel_adapter", {}, None, {}),
    "parallel_adapter_mlp_mhsa": ("parallel_adapter", {"placement": "mlp+mhsa", "blocks": [0, 2]}, None, {}),
    "sam_ptx": ("sam_ptx", {}, "clip", {}),
    "sam_ptx_mlp_mhsa": ("sam_ptx", {"placement": "mlp+mhsa", "text_into": "mlp+mhsa"}, "clip", {}),
    "sam_ptx_shared": ("sam_ptx", {"text_projection": "shared", "placement": "mlp+mhsa"}, "clip", {}),
    "sam_ptx_prompt": ("sam_ptx", {"inject": "prompt"}, "clip", {}),
    "sam_ptx_decoder": ("sam_ptx", {"inject": "decoder"}, "clip", {}),
    "plm": ("plm", {}, None, {}),
    "plm_pmm": ("plm", {"pmm": True, "num_heads": 4, "mlp_dim": 64}, None, {}),
    "clip_guided": ("clip_guided", {}, "clip", {}),
    "clip_guided_both_text": ("clip_guided", {"position": "both", "features": ["text"]}, "clip", {}),
    "lora": ("lora", {}, None, {}),
    "lora_qkv_proj": ("lora", {"target_modules": ["qkv", "proj"]}, None, {}),
    "clip_points": ("clip_points", {}, "clip", {}),
}


def expected_keys(variant: str) -> list[str]:
    keys = []
    for key in EXPECTED[variant]:
        keys += EXPECTED["@mask_decoder"] if key == "@mask_decoder" else [key]
    return keys


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_trainable_weights_keep_their_names_and_order(variant, tiny_bert, tiny_clip):
    method, options, text, extra = VARIANTS[variant]
    clip_options = {"model_cfg": tiny_clip[0], "pretrained": tiny_clip[1]}
    text_options = {"bert": {"name_or_path": tiny_bert}, "clip": clip_options, None: None}[text]
    model = SamAdaptModel(sam_variant="tiny", image_size=TEST_SIZE, method=method, method_options=options,
                          text_encoder=text, text_options=text_options, **extra)
    assert list(model.trainable_state_dict()) == expected_keys(variant)


def test_every_method_is_covered():
    from samadapt.methods import METHODS

    assert {method for method, *_ in VARIANTS.values()} == set(METHODS)
