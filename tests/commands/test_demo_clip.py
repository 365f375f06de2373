"""The demo's tiny CLIP: pretrained on the synthetic shapes, saved in open_clip's format, used by the demo files."""

from pathlib import Path

import torch
import yaml

from samadapt.commands.demo import DEMO_METHODS, EXPERIMENTS
from samadapt.commands.demo_clip import TINY_CLIP, concept, pretrain_tiny_clip
from samadapt.text import CLIPTextEncoder
from samadapt.text.clip_vision import CLIPVisionEncoder


def test_tiny_clip_pretraining_writes_an_open_clip_state_dict(shapes_root, tmp_path):
    out = pretrain_tiny_clip(Path(shapes_root), tmp_path / "tiny_clip.pt", steps=2, batch_size=4)
    text = CLIPTextEncoder(model_cfg=TINY_CLIP, pretrained=str(out))  # strict open_clip.load_checkpoint
    vision = CLIPVisionEncoder(**text.spec)
    patches = vision(torch.rand(2, 3, 128, 128) * 255)
    assert patches.shape == (2, 8, 8, TINY_CLIP["embed_dim"]) and text.pooled_dim == TINY_CLIP["embed_dim"]


def test_concepts_ignore_where():
    assert concept("the leftmost red circle") == concept("red circle") == "red circle"


def test_demo_clip_experiments_use_the_tiny_clip_config():
    for method, experiment in DEMO_METHODS.items():
        model = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())["model"]
        if model.get("text_encoder") == "clip":
            assert model["text_options"]["model_cfg"] == TINY_CLIP, method
