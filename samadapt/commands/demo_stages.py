"""The demo's stages, each run in a worker process: the synthetic data, the stand-in SAMs and CLIP, one method.

Every stage reads and writes files only (the data under <out>/data; a seed's stand-ins and runs under its own
folder), so any two whose inputs exist can run side by side. A method stage returns its test scores and the
predictions drawn in examples*.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
METRIC_KEYS = ("oIoU", "mIoU", "P@0.5", "P@0.7", "P@0.9")
# Test data of each demo method, when it is not the referring shapes: name -> (folder under <out>/data, label).
REFERRING = ("", "synthetic referring shapes (testA + testB)")
DEMO_DATA = {
    "parallel_adapter": ("classaware", "synthetic class-aware shapes (test)"),
    "sam_ptx": ("classaware", "synthetic class-aware shapes (test)"),
    "frozen_point": ("nested", "synthetic nested shapes, one point (test)"),
    "samf": ("nested", "synthetic nested shapes, one point (test)"),
    "plm": ("nested", "synthetic nested shapes, one point (test)"),
}
# The stand-in SAM sits on a loss plateau for its first 250-400 steps (docs/measurements.md#demo); past it, boxes
# reach 0.7-0.9 val oIoU. Below this it has not left the plateau for long, and the text rows mean little.
GOOD_STAND_IN = 0.6
STAND_INS = {  # file -> (experiment that trains it, data folder under <out>/data)
    "tiny_sam.pth": ("demo/pretrain", ""),  # objects, from points and boxes, from scratch
    "tiny_sam_parts.pth": ("demo/pretrain_parts", "nested_parts"),  # then parts and wholes, from boxes
}


def build_cli(experiment: str, folder: Path, data: Path, overrides: list[str], run_name: str, seed: int = 0):
    """A LightningCLI (not yet run) for base.yaml + `experiment`, seeded, writing under `folder`, reading `data`."""
    from samadapt.training.cli import SamAdaptCLI

    local = {  # a third config layer: where this demo writes, so it never touches ./runs of the caller
        "seed_everything": seed,
        "trainer": {
            "default_root_dir": str(folder / run_name),
            "logger": [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": str(folder / "logs"), "name": run_name}},
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"project": "samadapt-demo", "save_dir": str(folder / "logs"), "offline": True,
                               "name": run_name if not seed else f"{run_name}-seed{seed}", "group": "shapes",
                               "tags": [run_name, f"seed{seed}"]}},
            ],
        },
        "data": {"init_args": {"root": str(data)}},
    }
    local_file = folder / run_name / "demo_paths.yaml"
    local_file.parent.mkdir(parents=True, exist_ok=True)
    local_file.write_text(yaml.safe_dump(local))
    args = ["--config", str(EXPERIMENTS / "base.yaml"), "--config", str(EXPERIMENTS / f"{experiment}.yaml"),
            "--config", str(local_file), *overrides]
    return SamAdaptCLI(args=args, run=False)


def read_experiment(experiment: str) -> dict:
    return yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())


def stand_in_checkpoint(exp: dict, folder: Path) -> list[str]:
    """The override pointing an experiment's stand-in SAM (runs/demo/<file>) into `folder`; none if it names none."""
    named = exp["model"].get("sam_checkpoint")
    return [f"--model.sam_checkpoint={folder / Path(named).name}"] if named else []


def write_referring(data: Path, num_train: int, num_eval: int) -> None:
    from data_modules.synthetic.referring import write_synthetic_refcoco

    if not (data / "shapes" / "instances.json").exists():
        write_synthetic_refcoco(data, dataset="shapes", num_train=num_train, num_eval=num_eval, seed=0)


def write_classaware(data: Path, num_train: int, num_eval: int) -> None:
    """The class-aware shapes (two touching shapes, one click on their edge, the class name decides)."""
    from data_modules.synthetic.classaware import write_classaware_shapes

    if not (data / "classaware" / "test" / "points.json").exists():
        write_classaware_shapes(data / "classaware", num_train=num_train, num_eval=num_eval, seed=0)


def write_nested(data: Path, num_train: int, num_eval: int) -> None:
    """The nested-shapes task, and other scenes (seed 1) with every shape its own sample, for pretraining."""
    from data_modules.synthetic.nested_shapes import write_nested_shapes

    if not (data / "nested" / "test").exists():
        write_nested_shapes(data / "nested", (("train", num_train), ("val", num_eval), ("test", 2 * num_eval)))
    if not (data / "nested_parts" / "val").exists():
        write_nested_shapes(data / "nested_parts", (("train", num_train), ("val", num_eval)), seed=1, every_shape=True)


def pretrain_sam(weights: str, folder: Path, data: Path, seed: int, steps: int | None) -> str:
    """Train the stand-in SAM `weights` (STAND_INS) and save it in the official format; nothing if it exists."""
    from samadapt.sam import save_sam_checkpoint
    from samadapt.training.cli import finish_wandb

    if (folder / weights).exists():
        return "already there"
    experiment, data_folder = STAND_INS[weights]
    overrides = [*stand_in_checkpoint(read_experiment(experiment), folder),
                 *([f"--trainer.max_steps={steps}"] if steps else [])]
    cli = build_cli(experiment, folder, data / data_folder, overrides, Path(experiment).name, seed)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finish_wandb()
    save_sam_checkpoint(cli.model.model.sam, folder / weights)
    reached = cli.trainer.callback_metrics.get("val/oIoU")
    if reached is None:
        return ""
    if weights == "tiny_sam.pth" and float(reached) < GOOD_STAND_IN:  # docs/measurements.md#demo: the plateau
        return (f"val oIoU {float(reached):.3f} from boxes, below {GOOD_STAND_IN}: this stand-in has not learned to "
                "draw the shapes yet and the rows trained on it are no evidence; give it more --pretrain-steps")
    return f"val oIoU {float(reached):.3f} from boxes"


def pretrain_clip(folder: Path, data: Path, seed: int, steps: int | None) -> str:
    from samadapt.commands.demo_clip import pretrain_tiny_clip

    if (folder / "tiny_clip.pt").exists():
        return "already there"
    pretrain_tiny_clip(data, folder / "tiny_clip.pt", seed=seed, **({"steps": steps} if steps else {}))
    return ""


def train_method(method: str, folder: Path, data: Path, seed: int, steps: int | None) -> dict:
    """Train (unless it is a reference row or a pipeline) and test one method; its scores and example panel."""
    from samadapt.training.cli import finish_wandb

    experiment = f"demo/{method}"
    exp = read_experiment(experiment)
    untrained = (exp.get("trainer") or {}).get("max_steps") == 0
    steps = None if untrained else steps  # a reference row stays untrained under --steps
    overrides = stand_in_checkpoint(exp, folder) + ([f"--trainer.max_steps={steps}"] if steps else [])
    if exp["model"].get("text_encoder") == "clip":  # the stand-in CLIP of this seed
        overrides.append(f"--model.text_options.pretrained={folder / 'tiny_clip.pt'}")
    data_folder, label = DEMO_DATA.get(method, REFERRING)
    cli = build_cli(experiment, folder, data / data_folder, overrides, method, seed)
    start = time.perf_counter()
    if cli.model.model.method.needs_training:  # a pipeline such as clip_points is only evaluated
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    finish_wandb()
    scores = {k: float(cli.trainer.callback_metrics[f"test/{k}"]) for k in METRIC_KEYS}
    counts = cli.model.parameter_counts()
    return {**scores, "trainable_params": counts["trainable_params"], "train_seconds": round(seconds, 1),
            "data": label, "log_dir": str(cli.trainer.log_dir), "examples": example_panel(cli)}


def example_panel(cli, count: int = 4) -> dict:
    """A few test samples spread over the first test split, with this method's masks (letterboxed frame)."""
    import numpy as np
    import torch

    from data_modules.pipeline.collate import collate_prompted
    from samadapt.evaluation.protocol import probability_threshold

    dataset = cli.datamodule.test_sets[0]
    step = max(1, len(dataset) // count)  # different images, not one image's sentences
    samples = [dataset[i] for i in range(0, min(len(dataset), step * count), step)]
    model = cli.model.eval()
    with torch.no_grad():
        probs, valid = model.predict_masks(collate_prompted(samples))
    cut = probability_threshold(model.hparams.threshold, model.hparams.threshold_on)
    show_points = "points" in next(iter(model.eval_kinds.values()))
    return {
        "images": [s["image"].permute(1, 2, 0).numpy().astype(np.uint8) for s in samples],
        "truths": [s["mask"][0].bool().numpy() for s in samples],
        "points": [s["points"][s["point_labels"] == 1].numpy() if show_points else None for s in samples],
        "texts": [s["text"] for s in samples],
        "masks": ((probs > cut) & valid)[:, 0].numpy(),
    }
