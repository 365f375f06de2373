"""`samadapt inspect-data --config experiments/base.yaml --config experiments/<dataset>/<method>.yaml [--data...=V]`.

Builds the experiment's DataModule exactly from its YAML, prints a JSON report (samples per split, what prompts
the samples provide, the text vocabulary, every handled conversion) and writes a PNG grid of samples with their
masks, points, boxes and text, so a user sees what the model will see.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from torch.utils.data import Dataset, Subset

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.io import output_file


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def data_config(configs: list[str], overrides: list[str]) -> dict:
    """The `data` section after the config files and the `--data.[init_args.]key=value` overrides, in order."""
    data: dict = {}
    model: dict = {}  # the model's image size, which the DataModule follows (as SamAdaptCLI links them)
    for path in configs:
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(p, "config file", "Pass an experiment file, e.g. experiments/demo/ldit.yaml.")
        loaded = yaml.safe_load(p.read_text()) or {}
        model.update(loaded.get("model") or {})
        section = loaded.get("data") or {}
        if section.get("class_path") and section["class_path"] != data.get("class_path"):
            # a new class keeps only the earlier arguments it accepts (as LightningCLI does)
            data = {"class_path": data.get("class_path"), "init_args": data.get("init_args", {})}
        data = _merge(data, section)
    for item in overrides:
        key, sep, value = item.removeprefix("--").partition("=")
        if key in ("model.image_size", "model.sam_variant") and sep:
            model[key.removeprefix("model.")] = yaml.safe_load(value)
            continue
        if not key.startswith("data.") or not sep:
            raise SamAdaptError(f"cannot use the override {item!r}; write --data.init_args.<name>=<value>.")
        key = key.removeprefix("data.")
        if key != "class_path":
            key = key.removeprefix("init_args.")
            data.setdefault("init_args", {})[key] = yaml.safe_load(value)
        else:
            data["class_path"] = value
    if not data.get("class_path"):
        raise SamAdaptError("the configs set no data.class_path; pass experiments/base.yaml and the experiment file.")
    from samadapt.training.cli import model_input_size

    size = model_input_size(model.get("sam_variant", "vit_b"), model.get("image_size"))
    data.setdefault("init_args", {}).setdefault("image_size", size)
    return data


def build_datamodule(data: dict) -> Any:
    """Instantiate the DataModule through jsonargparse, as LightningCLI does (types checked)."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    module_name, _, cls_name = data["class_path"].rpartition(".")
    cls = getattr(__import__(module_name, fromlist=[cls_name]), cls_name, None)
    if cls is None:
        raise SamAdaptError(f"data.class_path {data['class_path']} does not exist.")
    own = ArgumentParser()
    own.add_class_arguments(cls, "data")  # its own arguments and, through **kwargs, its parents'
    accepted = set(own.get_defaults()["data"].keys())
    init_args = {k: v for k, v in (data.get("init_args") or {}).items() if k in accepted}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    try:
        cfg = parser.parse_object({"data": {"class_path": data["class_path"], "init_args": init_args}})
    except Exception as e:  # jsonargparse reports bad types / unknown keys
        raise SamAdaptError(f"invalid data configuration: {e}") from e
    return parser.instantiate_classes(cfg).data


def _unwrap(ds: Dataset) -> tuple[Dataset, list[int] | None]:
    if isinstance(ds, Subset):
        return ds.dataset, list(ds.indices)
    return ds, None


def split_sets(dm: Any) -> dict[str, Dataset]:
    sets = {"train": dm.train_set, "val": dm.val_set}
    for name, ds in zip(dm.test_split_names, dm.test_sets, strict=True):
        sets[f"test/{name}"] = ds
    return {k: v for k, v in sets.items() if v is not None}


def split_report(ds: Dataset, max_samples: int) -> dict:
    """Counts from every sample's record (texts) and from up to `max_samples` decoded samples (prompts)."""
    base, indices = _unwrap(ds)
    n = len(ds)  # type: ignore[arg-type]
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(n, max_samples))}) if n else []
    prompts: Counter[str] = Counter()
    points_per_sample: Counter[int] = Counter()
    texts_seen = []
    for i in picks:
        s = ds[i]
        labels = s["point_labels"]
        points_per_sample[int(labels.numel())] += 1
        prompts["foreground_points"] += int(bool((labels == 1).any()))
        prompts["background_points"] += int(bool((labels == 0).any()))
        prompts["points_marked_absent"] += int(bool((labels == -1).all()))
        prompts["box"] += int(s["box"].numel() == 4)
        prompts["text"] += int(bool(s["text"]))
        prompts["ignore_pixels"] += int("ignore" in s and bool(s["ignore"].any()))
        texts_seen.append(s["text"])
    if hasattr(base, "texts"):
        all_texts = base.texts()
        texts = [all_texts[i] for i in indices] if indices is not None and len(all_texts) == len(base) else all_texts
    else:
        texts = texts_seen
    vocab = Counter(t for t in texts if t)
    handled = base.report.as_dict() if hasattr(base, "report") else {}  # skipped referents by reason included
    return {
        "samples": n,
        "inspected": len(picks),
        "prompts": {"points_per_sample": {str(k): v for k, v in sorted(points_per_sample.items())}, **prompts},
        "vocabulary": {"size": len(vocab), "samples_with_text": sum(vocab.values()),
                       "most_common": [t for t, _ in vocab.most_common(10)]},
        "handled": handled,
    }


def draw_grid(ds: Dataset, out: Path, num: int = 12, cols: int = 4) -> Path:
    """A PNG of `num` samples: image, mask (cyan outline), ignore (grey), points (+ green / x red), box, text."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    n = min(num, len(ds))  # type: ignore[arg-type]
    if n == 0:
        raise SamAdaptError("no samples to draw")
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        s, ax = ds[i], axes.flat[i]
        img = s["image"].permute(1, 2, 0).clamp(0, 255).byte().numpy()
        overlay = img.astype(np.float32)
        m = s["mask"][0].numpy() > 0.5
        if "ignore" in s:
            ig = s["ignore"][0].numpy()
            overlay[ig] = 0.4 * overlay[ig] + 0.6 * 128
        ax.imshow(overlay.astype(np.uint8))
        if m.any():
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=1.5)
        labels = s["point_labels"]
        for (x, y), lab in zip(s["points"].tolist(), labels.tolist(), strict=True):
            if lab == 1:
                ax.plot(x, y, "+", color="lime", markersize=10, markeredgewidth=2)
            elif lab == 0:
                ax.plot(x, y, "x", color="red", markersize=8, markeredgewidth=2)
        x0, y0, x1, y1 = s["box"].tolist()
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", linewidth=1.5))
        ax.set_title("\n".join(textwrap.wrap(f"{s['text'] or '(no text)'}  [{s['sample_id']}]", 34)), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def inspect_data(configs: list[str], overrides: list[str], out: Path, max_samples: int = 64, grid: int = 12,
                 grid_split: str = "train") -> dict:
    dm = build_datamodule(data_config(configs, overrides))
    dm.setup(None)
    sets = split_sets(dm)
    report = {"data": f"{type(dm).__module__}.{type(dm).__name__}",
              "splits": {name: split_report(ds, max_samples) for name, ds in sets.items()}}
    if grid > 0:
        if grid_split not in sets:
            raise SamAdaptError(f"no split {grid_split!r} to draw; choose one of {', '.join(sets)}.")
        report["grid"] = str(draw_grid(sets[grid_split], out, grid))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="samadapt inspect-data", description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True, help="config file; repeat (base.yaml, then exp)")
    p.add_argument("--out", type=output_file, default=None,
                   help="PNG grid path (default runs/inspect/<last config>.png)")
    p.add_argument("--max-samples", type=int, default=64, help="samples decoded per split for prompt counts")
    p.add_argument("--grid", type=int, default=12, help="samples drawn in the grid (0: no grid)")
    p.add_argument("--split", default="train", help="split drawn in the grid: train, val or test/<name>")
    args, overrides = p.parse_known_args(argv)
    out = Path(args.out) if args.out else Path("runs/inspect") / f"{Path(args.config[-1]).stem}.png"
    report = inspect_data(args.config, overrides, out, args.max_samples, args.grid, args.split)
    print(json.dumps(report, indent=2))
