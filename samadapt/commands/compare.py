"""`samadapt compare RUN_DIR... [--metric oIoU] --out report.md`: runs side by side, without a W&B account.

A run folder is what a tested run leaves behind: `results.json` (samadapt/run_results.py writes it into the
run's log folder at the end of `samadapt test`, or of `trainer.test` as the demo calls it). A RUN_DIR may be
that folder, a results.json file, or any folder above them (every results.json below it is one run).
Writes a markdown table (one row per run and test split: method, dataset, trainable parameters, every metric,
and the run's cost where known) and a bar chart of --metric per run and split next to it (report.png).
Runs that differ only in seed (same `config_id` in results.json, different `seed`) are also pooled into a
table of mean +- std over the seeds (sample std, n - 1), one row per configuration and split.
"""

import argparse
import json
import statistics
from pathlib import Path

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.io import atomic_write, output_file
from samadapt.training.results_file import POOLED, RESULTS_FILE

COSTS = {"train_seconds": "train s", "step_seconds": "step s", "peak_memory_mb": "peak MB"}
HOW_TO_GET = f"Give folders of tested runs: `samadapt test ...` writes {RESULTS_FILE} into the run's log folder."


def find_result_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            found = [path]
        elif (path / RESULTS_FILE).is_file():
            found = [path / RESULTS_FILE]
        elif path.is_dir():
            found = sorted(path.rglob(RESULTS_FILE))
            if not found:
                raise SamAdaptError(f"no {RESULTS_FILE} in {path} or below. {HOW_TO_GET}")
        else:
            raise MissingFileError(path, "run folder", HOW_TO_GET)
        files += [f for f in found if f not in files]
    return files


def load_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SamAdaptError(f"cannot read {path}: {err}. It should be a {RESULTS_FILE} written by a test run.") from err
    if not isinstance(results, dict) or not isinstance(results.get("metrics"), dict):
        raise SamAdaptError(f"{path} has no per-split 'metrics'; it is not a samadapt {RESULTS_FILE}")
    check_numbers(results, path)
    results.setdefault("run_name", path.parent.name)
    return results


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_numbers(results: dict, path: Path) -> None:
    """Every metric, and every cost field the tables format as a number, is a number (a cost may be null)."""
    for split, values in results["metrics"].items():
        if not isinstance(values, dict):
            raise SamAdaptError(f"{path}: metrics of split {split!r} are {type(values).__name__}, not a mapping of "
                                f"metric names to numbers; it is not a samadapt {RESULTS_FILE}")
        for key, value in values.items():
            if not _is_number(value):
                raise SamAdaptError(f"{path}: metric {key!r} of split {split!r} is {value!r}, not a number; fix "
                                    "or remove it")
    for key in ("trainable_params", *COSTS):
        if results.get(key) is not None and not _is_number(results[key]):
            raise SamAdaptError(f"{path}: {key!r} is {results[key]!r}, not a number; fix or remove it")


def unique_names(runs: list[dict]) -> list[str]:
    names, seen = [], {}
    for run in runs:
        name = str(run["run_name"])
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return names


def ordered_union(lists) -> list[str]:
    return list(dict.fromkeys(item for items in lists for item in items))


def splits_of(run: dict) -> list[str]:
    """Test splits in their logged order, every split pooled last."""
    return sorted(run["metrics"], key=lambda split: split == POOLED)


def cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(runs: list[dict], names: list[str]) -> str:
    metrics = ordered_union(values for run in runs for values in run["metrics"].values())
    costs = [key for key in COSTS if any(run.get(key) is not None for run in runs)]
    header = ["run", "method", "dataset", "trainable params", "split", *metrics, *(COSTS[k] for k in costs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in zip(names, runs, strict=True):
        for split in splits_of(run):
            values = run["metrics"][split]
            row = [name, run.get("method", "?"), run.get("dataset", "?"), cell(run.get("trainable_params"), ","),
                   split, *(cell(values.get(m), ".3f") for m in metrics), *(cell(run.get(k), ",.1f") for k in costs)]
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def seed_groups(runs: list[dict], names: list[str]) -> list[tuple[str, list[dict]]]:
    """Configurations run with two or more seeds: (label, runs), in first-seen order."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for name, run in zip(names, runs, strict=True):
        if run.get("config_id") and run.get("seed") is not None:
            groups.setdefault(run["config_id"], []).append((name, run))
    pooled = []
    for members in groups.values():
        if len({run["seed"] for _, run in members}) >= 2:
            label = f"{members[0][1].get('method', '?')} ({members[0][0]}, ...)"
            pooled.append((label, [run for _, run in members]))
    return pooled


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return "–" if not values else f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def seed_table(runs: list[dict], names: list[str]) -> str:
    """Mean +- std over seeds for every configuration run with several seeds; "" when there is none."""
    groups = seed_groups(runs, names)
    if not groups:
        return ""
    metrics = ordered_union(values for run in runs for values in run["metrics"].values())
    header = ["configuration", "dataset", "split", "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, members in groups:
        seeds = ", ".join(str(run["seed"]) for run in members)
        for split in ordered_union(splits_of(run) for run in members):
            cells = [mean_std([run["metrics"][split][m] for run in members
                               if m in run["metrics"].get(split, {})]) for m in metrics]
            lines.append("| " + " | ".join([label, str(members[0].get("dataset", "?")), split, seeds, *cells]) + " |")
    return "\n".join(["## Over seeds (mean ± std)", "", *lines, ""])


def bar_chart(runs: list[dict], names: list[str], metric: str, path: Path) -> None:
    """Grouped bars: one group per run, one bar per test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = ordered_union(splits_of(run) for run in runs)
    width = 0.8 / len(splits)
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(runs) + 2), 3.2))
    for i, split in enumerate(splits):
        heights = [run["metrics"].get(split, {}).get(metric, np.nan) for run in runs]
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, heights, width, label=split)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"test {metric} per run and split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def write_comparison(paths: list[Path], out: Path, metric: str = "oIoU", title: str = "samadapt runs") -> str:
    """Write the markdown report `out` and its bar chart (same name, .png); return the report's text."""
    if out.suffix == ".png":
        raise SamAdaptError(f"--out {out} is where the markdown goes (the chart is written next to it): use a .md name")
    runs = [load_results(f) for f in find_result_files(paths)]
    available = ordered_union(values for run in runs for values in run["metrics"].values())
    if metric not in available:
        raise SamAdaptError(f"metric {metric!r} is in none of the runs; choose --metric from {', '.join(available)}")
    names = unique_names(runs)
    chart = out.with_suffix(".png")
    bar_chart(runs, names, metric, chart)
    text = "\n".join([f"# {title}", "", markdown_table(runs, names), "",
                      f"IoUs are fractions in [0, 1]; `{POOLED}` is every test split together.", "",
                      seed_table(runs, names),
                      f"![test {metric}]({chart.name})", ""])
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or their results.json, or folders above)")
    parser.add_argument("--metric", default="oIoU", help="the metric of the bar chart (default oIoU)")
    parser.add_argument("--out", type=output_file, default=Path("report.md"), help="markdown report; the chart is .png")
    args = parser.parse_args(argv)
    print(write_comparison(args.runs, args.out, args.metric))
    print(f"[compare] wrote {args.out} and {args.out.with_suffix('.png')}")
