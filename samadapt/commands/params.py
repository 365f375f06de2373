"""`samadapt params --config experiments/<dataset>/<method>.yaml`: total and trainable parameters, by part.

The model section of the configs (experiments/base.yaml first, then each --config in order, e.g. an ablation; a
later file replaces a key of `model:` whole, as LightningCLI does) builds the SamAdaptModel exactly as training
would, without data or trainer. Missing weight files are not needed for counting: SAM is built with random
weights when its checkpoint file does not exist, and CLIP's text tower with random weights when its pretrained
weights are not cached (same architecture, same count); `bert-base-uncased` likewise, from transformers'
BertConfig defaults, which are that model's configuration. Any other text encoder that cannot be found is an error.
"""

import argparse
import json
import re
from contextlib import contextmanager
from pathlib import Path

import yaml

from samadapt.errors import MissingFileError, SamAdaptError

# Part of the model a parameter belongs to, by its name; the first matching pattern wins.
PARTS: tuple[tuple[str, str], ...] = (
    ("text_projection", r"(^|\.)text_proj\."),  # SAM-PTx: act(W_t t), inside adapters or in the method
    ("adapters", r"\.(mlp|attn)_branch\."),  # bottlenecks parallel to encoder blocks
    ("encoder_text_tokens", r"\.extra_tokens\."),  # DIT: text tokens projected into encoder blocks
    ("method_layers", r"^method\."),  # any other layer a method owns (e.g. text -> prompt tokens)
    ("image_encoder", r"^sam\.image_encoder\."),
    ("prompt_encoder", r"^sam\.prompt_encoder\."),
    ("mask_decoder", r"^sam\.mask_decoder\."),
    ("text_encoder", r"^text_encoder\."),
)
MODEL_KEYS = ("sam_variant", "sam_checkpoint", "image_size", "method", "method_options", "text_encoder",
              "text_options", "train_image_encoder", "train_text_encoder")


def part_of(name: str) -> str:
    for part, pattern in PARTS:
        if re.search(pattern, name):
            return part
    return "other"


def read_model_section(configs: list[Path]) -> dict:
    """The `model:` settings the configs give, later files replacing earlier keys, over the module's defaults."""
    from samadapt.model import model_defaults

    defaults = {k: v for k, v in model_defaults().items() if k in MODEL_KEYS}
    merged = dict(defaults)
    for path in configs:
        if not path.is_file():
            raise MissingFileError(path, "config file", "Pass an existing experiment file.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise SamAdaptError(f"could not read {path}: {err}") from None
        merged.update({k: v for k, v in (data.get("model") or {}).items() if k in MODEL_KEYS})
    return merged


def with_base(configs: list[Path]) -> list[Path]:
    """Prepend the experiments' base.yaml (the nearest in the first config's folder or above) unless already given."""
    folder = configs[0].parent
    base = next((f / "base.yaml" for f in (folder, *folder.parents) if (f / "base.yaml").is_file()), None)
    if base is None or any(c.resolve() == base.resolve() for c in configs):
        return configs
    return [base, *configs]


def random_bert_base() -> type:
    """A TextEncoder class: bert-base-uncased's architecture (transformers.BertConfig defaults) with random weights,
    for counting only. Made on demand: `samadapt params --help` starts without loading torch."""
    from samadapt.text import TextEncoder

    class RandomBertBase(TextEncoder):
        def __init__(self, **_: object) -> None:
            super().__init__(cache_size=0)
            from transformers import BertConfig, BertModel

            self.model = BertModel(BertConfig())
            self.dim = self.pooled_dim = int(self.model.config.hidden_size)
            self.freeze()

    return RandomBertBase


@contextmanager
def text_encoder_replaced(kind: str, cls: type):
    """Build `kind` text encoders as `cls` inside the block (the registry is a plain dict)."""
    from samadapt.text import TEXT_ENCODERS

    original = TEXT_ENCODERS[kind]
    TEXT_ENCODERS[kind] = cls
    try:
        yield
    finally:
        TEXT_ENCODERS[kind] = original


def build_for_counting(settings: dict) -> tuple["object", dict[str, str]]:
    """SamAdaptModel from the settings; weights that are missing on disk are replaced by random ones."""
    from samadapt.model import SamAdaptModel

    weights: dict[str, str] = {}
    checkpoint = settings["sam_checkpoint"]
    if checkpoint and not Path(checkpoint).is_file():
        weights["sam"] = f"random (no checkpoint file {checkpoint})"
        checkpoint = None
    else:
        weights["sam"] = checkpoint or "random (no checkpoint given)"
    text_options = dict(settings["text_options"] or {})
    args = dict(settings, sam_checkpoint=checkpoint)
    try:
        model = SamAdaptModel(**{**args, "text_options": text_options})
    except MissingFileError as err:
        if settings["text_encoder"] == "clip":
            text_options["pretrained"] = None  # same architecture, random weights: the count is the same
            model = SamAdaptModel(**{**args, "text_options": text_options})
        elif settings["text_encoder"] == "bert" and text_options.get("name_or_path") == "bert-base-uncased":
            with text_encoder_replaced("bert", random_bert_base()):
                model = SamAdaptModel(**{**args, "text_options": text_options})
        else:
            raise
        weights["text"] = f"random ({settings['text_encoder']} weights not found: {err.path})"
    if settings["text_encoder"] and "text" not in weights:
        weights["text"] = str(text_options.get("pretrained") or text_options.get("name_or_path") or "default")
    return model, weights


def count(model) -> dict:
    parts: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        entry = parts.setdefault(part_of(name), {"params": 0, "trainable": 0})
        entry["params"] += p.numel()
        entry["trainable"] += p.numel() if p.requires_grad else 0
    total = sum(e["params"] for e in parts.values())
    text = parts.get("text_encoder", {}).get("params", 0)
    return {
        "total_params": total,
        "total_params_without_text_encoder": total - text,
        "trainable_params": sum(e["trainable"] for e in parts.values()),
        "parts": parts,
    }


def params_report(configs: list[Path]) -> dict:
    configs = with_base(configs)
    settings = read_model_section(configs)
    model, weights = build_for_counting(settings)
    report = {"configs": [str(c) for c in configs], "method": settings["method"],
              "sam_variant": settings["sam_variant"], "image_size": model.image_size, "weights": weights,
              **count(model)}
    if report["trainable_params"] != model.trainable_count:  # the model's own check of what trains
        raise RuntimeError("trainable count differs from the model's declared trainable parts")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt params", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, action="append", required=True,
                        help="experiment YAML, then an ablation (repeatable; experiments/base.yaml is added first)")
    args = parser.parse_args(argv)
    print(json.dumps(params_report(args.config), indent=2))
