"""What a run cost and what it scored, kept where `samadapt compare` and the W&B dashboard read it.

During training: `perf/step_seconds` (one whole step: forward, backward, optimizer) and `perf/peak_memory_mb`
(CUDA: peak allocated by torch; CPU: the process's peak resident memory) are logged.
At the end of testing: `<log_dir>/results.json` (see RESULTS_FILE) is written and the test metrics, parameter
counts and costs go into the summary of every W&B run, the numbers its runs table shows side by side.
"""

import hashlib
import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from samadapt.io import atomic_write_json
from samadapt.training.results_file import POOLED, RESULTS_FILE, RESULTS_FORMAT
from samadapt.training.wandb_run import dataset_label, method_label, prompt_label


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def split_metrics(callback_metrics: dict) -> dict[str, dict[str, float]]:
    """{"testA": {"oIoU": ...}, "all": {...}} from logged keys test/testA/oIoU, test/oIoU, test/testA/box/oIoU."""
    out: dict[str, dict[str, float]] = {}
    for key, value in callback_metrics.items():
        if not key.startswith("test/"):
            continue
        *scope, metric = key.removeprefix("test/").split("/")
        out.setdefault("/".join(scope) or POOLED, {})[metric] = float(value)
    return out


def config_id(pl_module: LightningModule, datamodule) -> str:
    """A short hash of the model's and data's settings: runs that differ only in seed share it (compare pools them).

    The data's own `seed` is left out, so a seed sweep over `--seed_everything` or `--data.init_args.seed` pools.
    """
    data = {k: v for k, v in dict(getattr(datamodule, "hparams", {}) or {}).items() if k != "seed"}
    settings = {"model": dict(pl_module.hparams), "data": data}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trained_run(checkpoint: str | None) -> str | None:
    """The run folder a checkpoint belongs to (<run>/checkpoints/<file>.ckpt), so a separate `test` names the run
    it evaluates; None when testing the weights in memory."""
    if not checkpoint:
        return None
    path = Path(checkpoint)
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def global_seed() -> int | None:
    """The seed `seed_everything` set (LightningCLI's --seed_everything), None when the run was not seeded."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed not in (None, "") else None


class RunResults(Callback):
    def __init__(self, filename: str = RESULTS_FILE) -> None:
        self.filename = filename
        self.step_times: list[float] = []
        self.train_seconds: float | None = None
        self._step_start = self._fit_start = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self.step_times, self._fit_start = [], time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":  # kernels run after their launch returns: time the step, not its launch
            torch.cuda.synchronize(pl_module.device)
        seconds = time.perf_counter() - self._step_start
        self.step_times.append(seconds)
        pl_module.log("perf/step_seconds", seconds, batch_size=1)
        pl_module.log("perf/peak_memory_mb", peak_memory_mb(pl_module.device), batch_size=1)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_seconds = round(time.perf_counter() - self._fit_start, 1)

    @staticmethod
    def folder(trainer: Trainer) -> str:
        """The run folder: the first logger's (checkpoints/ lives there too), else the trainer's root."""
        return trainer.log_dir or trainer.default_root_dir

    def results(self, trainer: Trainer, pl_module: LightningModule, folder: str) -> dict:
        hp = pl_module.hparams
        wandb_runs = [lg.experiment for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        method, dataset = method_label(hp), dataset_label(trainer.datamodule)
        return {
            "format": RESULTS_FORMAT,
            "run_name": wandb_runs[0].name if wandb_runs else f"{method}-{dataset}-{Path(folder).name}",
            "method": method,
            "dataset": dataset,
            "eval_prompts": prompt_label(hp.get("eval_prompts", "text")),
            "seed": global_seed(),
            "config_id": config_id(pl_module, trainer.datamodule),
            **pl_module.parameter_counts(),
            "train_seconds": self.train_seconds,
            "step_seconds": round(statistics.median(self.step_times), 4) if self.step_times else None,
            "peak_memory_mb": round(peak_memory_mb(pl_module.device), 1),
            "checkpoint": trainer.ckpt_path,
            "trained_run": trained_run(trainer.ckpt_path),
            "metrics": split_metrics(trainer.callback_metrics),
        }

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = self.folder(trainer)  # every process: trainer.log_dir is a collective (a broadcast) under DDP
        if not trainer.is_global_zero:
            return
        results = self.results(trainer, pl_module, folder)
        atomic_write_json(results, Path(folder) / self.filename)
        summary = {f"test/{split}/{k}" if split != POOLED else f"test/{k}": v
                   for split, values in results["metrics"].items() for k, v in values.items()}
        summary.update({k: results[k] for k in ("trainable_params", "total_params", "train_seconds",
                                                "step_seconds", "peak_memory_mb") if results[k] is not None})
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(summary)
