"""`samadapt demo`: the whole loop on the CPU with nothing downloaded.

1. a synthetic referring dataset in the RefCOCO layout (`samadapt synth`), and a synthetic class-aware one in
   the Folder layout (data_modules/synthetic/classaware.py) for the class-prompted adapters;
2. a tiny SAM pretrained on it with point and box prompts, saved as an official-format checkpoint (a copy
   trained on from there on parts and wholes, a shape inside a larger one, with box prompts, serves the
   nested-shapes task), and a tiny CLIP pretrained contrastively on its images and sentences
   (samadapt/commands/demo_clip.py), saved in open_clip's format;
3. every method trained on top of that frozen SAM from its experiment file (experiments/demo/*.yaml);
4. all evaluated on the synthetic test splits: metrics.json, report.md and examples.png in the output folder,
   with the claims of samadapt/commands/demo_claims.py checked.
Prompt learning has its own task (data_modules/synthetic/nested_shapes.py: a point on a small shape inside a larger
one means the larger one), with the frozen SAM and decoder fine-tuning given the same point as references.
`--full` repeats steps 2-4 for pretraining seeds 0, 1 and 2 (seed N>0 under <out>/seed_N) and reports mean ± std.
"""

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from samadapt.commands import demo_stages as st
from samadapt.commands.demo_schedule import Stage, run_stages
from samadapt.io import atomic_write, atomic_write_json, output_folder

# The demo's rows, in order; each is trained from experiments/demo/<row>.yaml. Later methods add a name here.
DEMO_METHODS = {name: f"demo/{name}" for name in (
    "decoder_only", "shallow_fusion", "edit", "ldit", "parallel_adapter", "sam_ptx", "frozen_point", "samf", "plm",
    "clip_guided_textonly", "clip_guided_manual", "clip_points", "lora",
)}
EXPERIMENTS = st.EXPERIMENTS
FULL_SEEDS = (0, 1, 2)
# Seconds each stage took on the 2-core VM with 2 workers (docs/measurements.md#demo); the progress line's estimate.
EXPECTED_SECONDS = {
    "referring data": 6, "class-aware data": 2, "nested data": 9, "tiny SAM": 143, "tiny SAM parts": 75,
    "tiny CLIP": 39, "edit": 125, "ldit": 130, "shallow_fusion": 57, "clip_guided_manual": 60,
    "clip_guided_textonly": 70, "sam_ptx": 62, "parallel_adapter": 65, "lora": 61, "plm": 52, "decoder_only": 35,
    "samf": 32, "clip_points": 7, "frozen_point": 3,
}


def seed_folder(out: Path, seed: int) -> Path:
    """Seed 0 writes the default demo's layout at <out>; other seeds their own stand-ins and runs in <out>/seed_N."""
    return out if seed == 0 else out / f"seed_{seed}"


def stage_name(name: str, seed: int) -> str:
    """A stage's name in the progress lines and results: "tiny SAM", "ldit (seed 2)"; data stages have no seed."""
    return name if seed == 0 or name.endswith("data") else f"{name} (seed {seed})"


def stage_log(folder: Path, name: str) -> Path:
    return folder / "stages" / f"{name.replace(' ', '_')}.log"


def data_stages(out: Path, num_train: int, num_eval: int) -> list[Stage]:
    data = out / "data"
    return [Stage(name, run, (data, num_train, num_eval), what=f"writing the synthetic {words}",
                  expected_s=EXPECTED_SECONDS[name], log=stage_log(out, name))
            for name, run, words in (
                ("referring data", st.write_referring, "referring shapes (RefCOCO layout)"),
                ("nested data", st.write_nested, "nested shapes"),
                ("class-aware data", st.write_classaware, "class-aware shapes"))]


def seed_stages(out: Path, seed: int, methods: list[str], args) -> list[Stage]:
    """Pretraining the stand-ins, then each method, for one seed."""
    folder, data = seed_folder(out, seed), out / "data"

    def stage(name: str, run, stage_args: tuple, needs: tuple[str, ...], what: str, threads: int = 0) -> Stage:
        return Stage(stage_name(name, seed), run, stage_args, tuple(stage_name(n, seed) for n in needs), what,
                     EXPECTED_SECONDS.get(name, 60.0), threads, stage_log(folder, name))

    stages = [  # the first stand-in gets every core: besides it only the data and the short CLIP stage can run
        stage("tiny SAM", st.pretrain_sam, ("tiny_sam.pth", folder, data, seed, args.pretrain_steps),
              ("referring data",), "pretraining the stand-in SAM with points and boxes",
              threads=os.cpu_count() or 1),
        stage("tiny SAM parts", st.pretrain_sam, ("tiny_sam_parts.pth", folder, data, seed, args.parts_steps),
              ("tiny SAM", "nested data"), "training a copy on parts and wholes (the nested task's stand-in)"),
        stage("tiny CLIP", st.pretrain_clip, (folder, data, seed, args.clip_steps), ("referring data",),
              "pretraining the stand-in CLIP"),
    ]
    for method in sorted(methods, key=lambda m: -EXPECTED_SECONDS.get(m, 60.0)):  # long ones first: less idle tail
        data_folder, label = st.DEMO_DATA.get(method, st.REFERRING)
        needs = {"nested": ("tiny SAM parts",), "classaware": ("tiny SAM", "class-aware data")}.get(data_folder,
                                                                                                      ("tiny SAM",))
        if "clip" in method:
            needs += ("tiny CLIP",)
        stages.append(stage(method, st.train_method, (method, folder, data, seed, args.steps), needs,
                            f"training and testing on the {label}"))
    return stages


def summary(name: str, result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k} {result[k]:.3f}" for k in ("oIoU", "mIoU", "P@0.5"))
    return result or ""


def write_seed_outputs(folder: Path, seed: int, metrics: dict[str, dict], panels: dict) -> None:
    """metrics.json, report.md (+ .png) and examples*.png of one seed's runs."""
    from samadapt.commands.compare import write_comparison
    from samadapt.commands.demo_claims import check_claims, claims_markdown
    from samadapt.commands.demo_figures import write_all_examples

    atomic_write_json(metrics, folder / "metrics.json")
    report = write_comparison([Path(m["log_dir"]) for m in metrics.values()], folder / "report.md", "oIoU",
                              f"samadapt demo, pretraining seed {seed}: synthetic tasks (examples*.png, one per task)")
    if check_claims({seed: metrics}):  # a subset of methods may make none of them applicable
        report += "\n## The demo's claims\n\n" + claims_markdown({seed: metrics}) + "\n"
        atomic_write(folder / "report.md", lambda tmp: Path(tmp).write_text(report))
    write_all_examples({m: (st.DEMO_DATA.get(m, st.REFERRING)[0], panel) for m, panel in panels.items()}, folder)


def write_seeds_report(out: Path, per_seed: dict[int, dict[str, dict]], seconds: float) -> str:
    from samadapt.commands.demo_claims import claims_markdown, seeds_markdown

    atomic_write_json({str(s): m for s, m in per_seed.items()}, out / "metrics_seeds.json")
    text = "\n".join([
        f"# samadapt demo over pretraining seeds {', '.join(map(str, per_seed))}", "",
        "Test scores, mean ± sample standard deviation over the seeds (each seed pretrains its own stand-in SAM "
        "and CLIP and trains every method with that seed).", "",
        seeds_markdown(per_seed), "", "## The demo's claims, per seed (the gap in test oIoU)", "",
        claims_markdown(per_seed), "", f"{seconds:.0f} s for the whole run.", ""])
    atomic_write(out / "report_seeds.md", lambda tmp: Path(tmp).write_text(text))
    return text


def reusable(folder: Path, settings: dict) -> dict | None:
    """A seed's metrics from an earlier run with the same settings (demo --full after make demo reuses seed 0)."""
    try:
        saved = json.loads((folder / "demo_settings.json").read_text())
        if {**dict.fromkeys(settings), **saved} == settings:  # an option added since then is at its default
            return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        pass
    return None


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samadapt demo", description=description)
    parser.add_argument("--out", type=output_folder, default=Path("runs/demo"))
    parser.add_argument("--num-train", type=int, default=800, help="synthetic training images")
    parser.add_argument("--num-eval", type=int, default=50, help="synthetic images per evaluation split")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="the stand-in SAM's steps (default 600)")
    parser.add_argument("--parts-steps", type=int, default=None,
                        help="steps of its copy trained on parts and wholes, the nested task's stand-in (default 250)")
    parser.add_argument("--clip-steps", type=int, default=None, help="tiny CLIP pretraining steps (default 300)")
    parser.add_argument("--workers", type=int, default=2,
                        help="stages side by side, one thread each (default 2; 1: one after another, in this process)")
    return parser


def prepare_main(argv: list[str] | None = None) -> None:
    parser = _parser("write the demo data and pretrain the tiny SAM and CLIP")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.steps = None
    stages = data_stages(args.out, args.num_train, args.num_eval) + seed_stages(args.out, args.seed, [], args)
    run_stages(stages, args.workers, summarise=summary)


def main(argv: list[str] | None = None) -> None:
    parser = _parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override each method's max_steps")
    parser.add_argument("--methods", nargs="*", default=list(DEMO_METHODS), choices=list(DEMO_METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="pretraining seeds (default 0)")
    parser.add_argument("--full", action="store_true", help=f"seeds {' '.join(map(str, FULL_SEEDS))}: the figures "
                        "docs/measurements.md quotes, mean ± std and each claim per seed in report_seeds.md")
    args = parser.parse_args(argv)
    seeds = list(FULL_SEEDS) if args.full else list(dict.fromkeys(args.seeds))
    start = time.perf_counter()
    settings = {k: getattr(args, k) for k in ("num_train", "num_eval", "pretrain_steps", "parts_steps", "clip_steps",
                                              "steps", "methods")}
    done = {seed: m for seed in seeds if len(seeds) > 1 and (m := reusable(seed_folder(args.out, seed), settings))}
    for seed in done:
        print(f"[demo] seed {seed}: reusing the finished run in {seed_folder(args.out, seed)}")
    stages = data_stages(args.out, args.num_train, args.num_eval)
    for seed in seeds:
        if seed not in done:
            stages += seed_stages(args.out, seed, args.methods, args)
    if len(seeds) - len(done) > 1:  # several stand-ins pretrain side by side: one thread each
        stages = [replace(stage, threads=0) for stage in stages]
    results = run_stages(stages, args.workers, summarise=summary)
    per_seed = dict(done)
    for seed in seeds:
        if seed in done:
            continue
        runs = {m: results[stage_name(m, seed)] for m in args.methods}
        panels = {m: run.pop("examples") for m, run in runs.items()}
        folder = seed_folder(args.out, seed)
        write_seed_outputs(folder, seed, runs, panels)
        atomic_write_json(settings, folder / "demo_settings.json")
        per_seed[seed] = runs
    per_seed = {seed: per_seed[seed] for seed in seeds}
    seconds = time.perf_counter() - start
    if len(seeds) > 1:
        print(write_seeds_report(args.out, per_seed, seconds))
    else:
        print((seed_folder(args.out, seeds[0]) / "report.md").read_text())
    print(f"[demo] done in {seconds:.0f} s: {args.out}/metrics.json, report.md, examples*.png"
          + (", metrics_seeds.json, report_seeds.md" if len(seeds) > 1 else ""))
