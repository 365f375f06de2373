"""A resumed run continues the run it resumes: the same version folder and the same W&B run.

Each checkpoint records its loggers' versions (CSV: the version_N folder; W&B: the run id). When `fit` resumes
from a checkpoint, loggers of the same kind take those versions back before they start, so one training curve
is one folder and one dashboard run (W&B with resume="allow"). The CSV log keeps the rows written up to the
checkpoint's step and drops the later ones, which the resumed run writes again.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

KEY = "samadapt_run_identity"


def logger_versions(trainer) -> list[list[Any]]:
    """[[logger class name, version], ...] in the trainer's logger order."""
    return [[type(logger).__name__, logger.version] for logger in trainer.loggers]


def continue_run(trainer, checkpoint: dict) -> list[str]:
    """Give each logger the version its predecessor in `checkpoint` had; return what was continued."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    saved = checkpoint.get(KEY) or []
    continued = []
    for logger, (kind, version) in zip(trainer.loggers, saved, strict=False):
        if type(logger).__name__ != kind or version is None:
            continue
        if isinstance(logger, CSVLogger) and logger._experiment is None:
            logger._version = version
            if hasattr(logger, "keep_rows_until"):
                logger.keep_rows_until = int(checkpoint.get("global_step", 0))
            continued.append(f"{logger.log_dir}")
        elif isinstance(logger, WandbLogger) and logger._experiment is None:
            logger._id = str(version)
            logger._wandb_init.update(id=str(version), resume="allow")
            continued.append(f"W&B run {version}")
    return continued


def rows_up_to(path: Path, last_step: int) -> tuple[list[dict], list[str]]:
    """The rows of a metrics.csv logged at steps <= last_step, and its columns."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = [row for row in reader if row.get("step", "") != "" and float(row["step"]) <= last_step]
        return rows, list(reader.fieldnames or [])
