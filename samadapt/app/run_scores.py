"""A run's test score, for the page's list of runs: read from the files a tested run leaves in its folder.

`samadapt test` (or the demo's trainer.test) writes into the run folder, next to checkpoints/:
- results.json (samadapt/training/run_results.py RunResults): {"eval_prompts", "metrics": {split: {metric: v}}},
  every test split pooled under "all";
- test_metrics.json (samadapt/evaluation/protocol.py write_report): {"results": [{"split", "prompts", metric: v}]}.
"""

import json
import math
from pathlib import Path

from samadapt.evaluation.protocol import REPORT_NAME
from samadapt.training.run_results import POOLED, RESULTS_FILE

PREFERRED = "oIoU"  # the referring-segmentation headline; other metric families show their first metric


def run_folder(checkpoint: Path) -> Path:
    """<run>/checkpoints/last.ckpt -> <run>; a checkpoint anywhere else -> its own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def _pick(metrics: dict) -> tuple[str, float] | None:
    numbers = {k: v for k, v in metrics.items()  # NaN (a diverged run) would make /api/info invalid JSON
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if not numbers:
        return None
    name = PREFERRED if PREFERRED in numbers else next(iter(numbers))
    return name, float(numbers[name])


def _from_results(data: dict) -> dict | None:
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return None
    split = POOLED if POOLED in metrics else next(iter(metrics))
    picked = _pick(metrics[split]) if isinstance(metrics[split], dict) else None
    if picked is None:
        return None
    return {"metric": picked[0], "value": picked[1], "split": split, "prompts": str(data.get("eval_prompts", ""))}


def _from_report(data: dict) -> dict | None:
    rows = [r for r in data.get("results") or [] if isinstance(r, dict)]
    if not rows:
        return None
    row = next((r for r in rows if r.get("split") == POOLED), rows[0])  # the first row: the first eval prompt
    picked = _pick({k: v for k, v in row.items() if k not in ("split", "prompts")})
    if picked is None:
        return None
    return {"metric": picked[0], "value": picked[1], "split": str(row.get("split")), "prompts": str(row.get("prompts"))}


def read_test_score(checkpoint: Path) -> dict | None:
    """{"metric": "oIoU", "value", "split", "prompts", "file"} of the run that wrote `checkpoint`, or None when
    the run was not tested. An unreadable file is skipped: the page still serves the run, without a score."""
    folder = run_folder(Path(checkpoint))
    for name, read in ((RESULTS_FILE, _from_results), (f"{REPORT_NAME}.json", _from_report)):
        path = folder / name
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        score = read(data) if isinstance(data, dict) else None
        if score is not None:
            return {**score, "file": str(path)}
    return None
