"""`samadapt demo`: the whole loop on the CPU with nothing downloaded.

1. a synthetic referring dataset in the RefCOCO layout (`samadapt synth`), and a synthetic class-aware one in
   the Folder layout (data_modules/synth_classaware.py) for the class-prompted adapters;
2. a tiny SAM pretrained on it with point and box prompts, saved as an official-format checkpoint (a copy
   trained on from there on parts and wholes, a shape inside a larger one, with box prompts, serves the
   nested-shapes task), and a tiny CLIP pretrained contrastively on its images and sentences
   (samadapt/commands/demo_clip.py), saved in open_clip's format;
3. every method trained on top of that frozen SAM from its experiment file (experiments/demo/*.yaml);
4. all evaluated on the synthetic test splits: metrics.json, report.md and examples.png in the output folder.
Prompt learning has its own task (data_modules/nested_shapes.py: a point on a small shape inside a larger one
means the larger one), with the frozen SAM and decoder fine-tuning given the same point as references.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from samadapt.io import atomic_write, atomic_write_json, output_folder
from samadapt.training.cli import SamAdaptCLI, finish_wandb

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# The demo's rows, in order; each is trained from experiments/demo/<row>.yaml. Later methods add a name here.
DEMO_METHODS = {name: f"demo/{name}" for name in (
    "decoder_only", "shallow_fusion", "edit", "ldit", "parallel_adapter", "sam_ptx", "frozen_point", "samf", "plm",
    "clip_guided_textonly", "clip_guided_manual", "clip_points", "lora",
)}
# Test data of each demo method, when it is not the referring shapes: name -> (folder under out/data, label).
REFERRING = ("", "synthetic referring shapes (testA + testB)")
DEMO_DATA = {
    "parallel_adapter": ("classaware", "synthetic class-aware shapes (test)"),
    "sam_ptx": ("classaware", "synthetic class-aware shapes (test)"),
    "frozen_point": ("nested", "synthetic nested shapes, one point (test)"),
    "samf": ("nested", "synthetic nested shapes, one point (test)"),
    "plm": ("nested", "synthetic nested shapes, one point (test)"),
}
METRIC_KEYS = ("oIoU", "mIoU", "P@0.5", "P@0.7", "P@0.9")


def build_cli(experiment: str, out: Path, overrides: list[str], run_name: str, data_folder: str = ""):
    """A LightningCLI (not yet run) for base.yaml + `experiment`, with logs and data under `out`."""
    local = {  # a third config layer: where this demo writes, so it never touches ./runs of the caller
        "trainer": {
            "default_root_dir": str(out / run_name),
            "logger": [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": str(out / "logs"), "name": run_name}},
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"project": "samadapt-demo", "save_dir": str(out / "logs"), "offline": True,
                               "name": run_name, "group": "shapes", "tags": [run_name]}},
            ],
        },
        "data": {"init_args": {"root": str(out / "data" / data_folder)}},
    }
    local_file = out / run_name / "demo_paths.yaml"
    local_file.parent.mkdir(parents=True, exist_ok=True)
    local_file.write_text(yaml.safe_dump(local))
    args = ["--config", str(EXPERIMENTS / "base.yaml"), "--config", str(EXPERIMENTS / f"{experiment}.yaml"),
            "--config", str(local_file), *overrides]
    return SamAdaptCLI(args=args, run=False)


def prepare(out: Path, num_train: int, num_eval: int, pretrain_steps: int | None,
            clip_steps: int | None = None) -> None:
    """Synthetic data, the pretrained tiny SAMs and tiny CLIP (each made once; delete them to redo)."""
    from data_modules.synthetic.nested_shapes import write_nested_shapes
    from data_modules.synthetic.referring import write_synthetic_refcoco
    from samadapt.sam import save_sam_checkpoint

    if not (out / "data" / "shapes" / "instances.json").exists():
        write_synthetic_refcoco(out / "data", dataset="shapes", num_train=num_train, num_eval=num_eval, seed=0)
        print(f"[demo] synthetic data written to {out / 'data'}")
    prepare_classaware(out, num_train, num_eval)
    if not (out / "data" / "nested").exists():
        write_nested_shapes(out / "data" / "nested", (("train", num_train), ("val", num_eval), ("test", 2 * num_eval)))
        print(f"[demo] nested-shapes data written to {out / 'data' / 'nested'}")
    if not (out / "data" / "nested_parts").exists():  # other scenes (seed 1) than the task's, for pretraining
        write_nested_shapes(out / "data" / "nested_parts", (("train", num_train), ("val", num_eval)), seed=1,
                            every_shape=True)
    steps = [f"--trainer.max_steps={pretrain_steps}"] if pretrain_steps else []
    stages = (  # (experiment, data folder, weights written; the later experiments name these files)
        ("demo/pretrain", "", "tiny_sam.pth"),  # objects, from points and boxes, from scratch
        ("demo/pretrain_parts", "nested_parts", "tiny_sam_parts.pth"),  # then parts and wholes, from boxes
    )
    for experiment, data_folder, weights in stages:
        if (out / weights).exists():
            continue
        start = time.perf_counter()
        overrides = [*stand_in_checkpoint(experiment, out), *steps]
        cli = build_cli(experiment, out, overrides, Path(experiment).name, data_folder)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finish_wandb()
        save_sam_checkpoint(cli.model.model.sam, out / weights)
        print(f"[demo] {experiment}: tiny SAM trained in {time.perf_counter() - start:.0f} s, saved to {out / weights}")
    if not (out / "tiny_clip.pt").exists():
        from samadapt.commands.demo_clip import pretrain_tiny_clip

        pretrain_tiny_clip(out / "data", out / "tiny_clip.pt", **({"steps": clip_steps} if clip_steps else {}))


def prepare_classaware(out: Path, num_train: int, num_eval: int) -> None:
    """The class-aware shapes (two touching shapes, one click on their edge, the class name decides)."""
    from data_modules.synthetic.classaware import write_classaware_shapes

    root = out / "data" / "classaware"
    if not (root / "test" / "points.json").exists():
        write_classaware_shapes(root, num_train=num_train, num_eval=num_eval, seed=0)
        print(f"[demo] synthetic class-aware data written to {root}")


def stand_in_checkpoint(experiment: str, out: Path) -> list[str]:
    """The override that points the experiment's stand-in SAM (runs/demo/<file>) into `out`; none if it names none."""
    exp = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())
    named = exp["model"].get("sam_checkpoint")
    return [f"--model.sam_checkpoint={out / Path(named).name}"] if named else []


def train_and_test(method: str, experiment: str, out: Path, steps: int | None):
    exp = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())
    untrained = (exp.get("trainer") or {}).get("max_steps") == 0
    steps = None if untrained else steps  # a reference row stays untrained under --steps
    overrides = stand_in_checkpoint(experiment, out) + ([f"--trainer.max_steps={steps}"] if steps else [])
    if exp["model"].get("text_encoder") == "clip":  # the stand-in CLIP made by prepare()
        overrides.append(f"--model.text_options.pretrained={out / 'tiny_clip.pt'}")
    cli = build_cli(experiment, out, overrides, method, DEMO_DATA.get(method, REFERRING)[0])
    start = time.perf_counter()
    if cli.model.model.method.needs_training:  # a pipeline such as clip_points is only evaluated
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    finish_wandb()
    scores = {k: float(cli.trainer.callback_metrics[f"test/{k}"]) for k in METRIC_KEYS}
    counts = cli.model.parameter_counts()
    return cli, {**scores, "trainable_params": counts["trainable_params"], "train_seconds": round(seconds, 1),
                 "data": DEMO_DATA.get(method, REFERRING)[1]}


def write_report(run_dirs: list[Path], out: Path) -> None:
    """report.md and report.png: `samadapt compare` over this demo's runs."""
    from samadapt.commands.compare import write_comparison

    write_comparison(run_dirs, out / "report.md", "oIoU",
                     "samadapt demo: synthetic tasks (examples*.png, one per test data)")


def write_all_examples(clis: dict, out: Path) -> None:
    """examples.png for the methods on the first method's test data, examples_<folder>.png for each other data."""
    groups: dict[str, dict] = {}
    for method, cli in clis.items():
        groups.setdefault(DEMO_DATA.get(method, REFERRING)[0], {})[method] = cli
    for i, (folder, group) in enumerate(groups.items()):
        write_examples(group, out, name="examples.png" if i == 0 else f"examples_{folder or 'referring'}.png")


def write_examples(clis: dict, out: Path, count: int = 4, name: str = "examples.png") -> None:
    """Image, ground truth and every method's prediction for a few test expressions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_modules.pipeline.collate import collate_prompted
    from samadapt.evaluation.protocol import probability_threshold

    first = next(iter(clis.values()))
    dataset = first.datamodule.test_sets[0]
    step = max(1, len(dataset) // count)  # spread over the split: different images, not one image's sentences
    samples = [dataset[i] for i in range(0, min(len(dataset), step * count), step)]
    batch = collate_prompted(samples)
    preds = {}
    for method, cli in clis.items():
        cli.model.eval()
        with torch.no_grad():
            probs, valid = cli.model.predict_masks(batch)  # in the letterboxed frame the figure shows
            cut = probability_threshold(cli.model.hparams.threshold, cli.model.hparams.threshold_on)
            preds[method] = ((probs > cut) & valid)[:, 0]
    show_points = "points" in next(iter(first.model.eval_kinds.values()))
    cols = 2 + len(preds)
    fig, axes = plt.subplots(len(samples), cols, figsize=(2.4 * cols, 2.5 * len(samples)), squeeze=False)
    overlay = np.array([1.0, 0.15, 0.6, 0.0])  # magenta, drawn only where the mask is on
    for row, sample in enumerate(samples):
        image = sample["image"].permute(1, 2, 0).numpy() / 255.0
        panels = [("image", None), ("ground truth", sample["mask"][0])] + [(m, p[row]) for m, p in preds.items()]
        for col, (title, mask) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(image)
            if show_points:  # the click(s) the methods were prompted with
                xy = sample["points"][sample["point_labels"] == 1]
                ax.scatter(xy[:, 0], xy[:, 1], s=18, c="white", edgecolors="black", linewidths=0.8)
            if mask is not None:
                layer = np.zeros((*mask.shape, 4))
                layer[mask.bool().numpy()] = overlay + np.array([0, 0, 0, 0.6])
                ax.imshow(layer)
            ax.set_title(title if col else f'"{sample["text"]}"', fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    atomic_write(out / name, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samadapt demo", description=description)
    parser.add_argument("--out", type=output_folder, default=Path("runs/demo"))
    parser.add_argument("--num-train", type=int, default=800, help="synthetic training images")
    parser.add_argument("--num-eval", type=int, default=50, help="synthetic images per evaluation split")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="override both pretraining stages' steps")
    parser.add_argument("--clip-steps", type=int, default=None, help="tiny CLIP pretraining steps (default 300)")
    return parser


def prepare_main(argv: list[str] | None = None) -> None:
    args = _parser("write the demo data and pretrain the tiny SAM").parse_args(argv)
    prepare(args.out, args.num_train, args.num_eval, args.pretrain_steps, args.clip_steps)


def main(argv: list[str] | None = None) -> None:
    parser = _parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override each method's max_steps")
    parser.add_argument("--methods", nargs="*", default=list(DEMO_METHODS), choices=list(DEMO_METHODS))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    prepare(args.out, args.num_train, args.num_eval, args.pretrain_steps, args.clip_steps)
    results, clis = {}, {}
    for method in args.methods:
        clis[method], results[method] = train_and_test(method, DEMO_METHODS[method], args.out, args.steps)
        print(f"[demo] {method}: " + ", ".join(f"{k} {results[method][k]:.3f}" for k in METRIC_KEYS))
    atomic_write_json(results, args.out / "metrics.json")
    write_report([Path(cli.trainer.log_dir) for cli in clis.values()], args.out)
    write_all_examples(clis, args.out)
    print((args.out / "report.md").read_text())
    print(f"[demo] done in {time.perf_counter() - start:.0f} s: {args.out}/metrics.json, report.md, examples*.png")
