"""The README.md `samadapt export` writes beside an adapter: a Hugging Face model card (YAML front matter the Hub
indexes, then a page for people) saying what the adapter needs and what it scored."""

import json
from pathlib import Path

import yaml

# Hub repositories of Meta's SAM weights in the SamModel format (the same weights as the official .pth files).
HUB_BASE_MODELS = {"vit_b": "facebook/sam-vit-base", "vit_l": "facebook/sam-vit-large",
                   "vit_h": "facebook/sam-vit-huge"}


def run_results(checkpoint_path: Path) -> dict | None:
    """The run's results.json (`<run>/checkpoints/x.ckpt` -> `<run>/results.json`), if testing wrote one."""
    for folder in (checkpoint_path.parent.parent, checkpoint_path.parent):
        path = folder / "results.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def data_of(checkpoint: dict, results: dict | None) -> dict:
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    return {"datamodule": str(data.get("_class_path", "")).rpartition(".")[2] or None,
            "dataset": (results or {}).get("dataset") or data.get("dataset") or Path(data.get("root") or "").name
            or None}


def model_card(config: dict, data: dict, results: dict | None, license_id: str) -> str:
    base = config["base_sam"]
    text = config["text_encoder"]
    text_name = (config["text_options"] or {}).get("name_or_path") or (config["text_options"] or {}).get("model")
    metrics = (results or {}).get("metrics") or {}
    front = {
        "library_name": "samadapt",
        "license": license_id,
        **({"base_model": HUB_BASE_MODELS[base["variant"]]} if base["variant"] in HUB_BASE_MODELS else {}),
        "pipeline_tag": "image-segmentation",
        "tags": ["samadapt", "segment-anything", config["method"], *(["text-guided"] if text else [])],
        "samadapt": {
            "base_sam": base,
            "method": config["method"],
            "text_encoder": {"kind": text, "name": text_name} if text else None,
            "image_size": config["module"].get("image_size"),
            "data": data,
            "metrics": metrics or None,
        },
    }
    example_prompt = 'text="the red car"' if text else "boxes=[10, 20, 200, 180]"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {config['method']} adapter for SAM {base['variant']}", "",
             f"{config['trainable_params']:,} trained weights on top of a frozen SAM ({base['variant']}, "
             f"`{base['checkpoint_name']}`, SHA-256 `{base['sha256']}`)"
             + (f" and the frozen {text} text encoder `{text_name}`." if text else "."), "",
             "```python", "from samadapt.inference.predictor import SamAdaptPredictor", "",
             'predictor = SamAdaptPredictor.from_pretrained("<this folder or Hub id>", '
             f'sam_checkpoint="checkpoints/{base["checkpoint_name"]}")',
             f'result = predictor.predict(image="photo.jpg", {example_prompt})',
             "```", ""]
    if metrics:
        names = sorted({name for values in metrics.values() for name in values})
        lines += [f"Test metrics on {data.get('dataset') or 'the run data'} (from the run's results.json):", "",
                  "| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {split} | " + " | ".join(f"{values[n]:.4f}" if n in values else "" for n in names) + " |"
                  for split, values in metrics.items()]
        lines.append("")
    return "\n".join(lines)
