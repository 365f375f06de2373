"""How a run appears on W&B: its name, group and tags, and the full resolved config uploaded with it.

Offline by default: `samadapt` sets WANDB_MODE=offline unless the shell sets it, and base.yaml leaves the
WandbLogger's `offline` flag alone, so `WANDB_MODE=online samadapt fit ...` logs live with no other change.
Offline runs land in <save_dir>/wandb/offline-run-*; `wandb sync <that folder>` uploads one later.
"""

import os
import time
from pathlib import Path

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


def method_label(hparams) -> str:
    """The method name, with its mode when it has one (dit-layerwise, dit-e2e)."""
    mode = (hparams.get("method_options") or {}).get("mode")
    return f"{hparams['method']}-{mode}" if mode else str(hparams["method"])


def dataset_label(datamodule: LightningDataModule | None) -> str:
    """The dataset a DataModule reads: its `dataset` argument (refcoco, shapes) or its class (cod10k)."""
    if datamodule is None:
        return "nodata"
    name = datamodule.hparams.get("dataset") if hasattr(datamodule, "hparams") else None
    return str(name or type(datamodule).__name__.removesuffix("DataModule").lower())


def prompt_label(prompts) -> str:
    """'text', or 'box|points+text' for a mix (the combinations in the order given)."""
    return "|".join(prompts) if isinstance(prompts, (list, tuple, dict)) else str(prompts)


def configure_wandb_loggers(trainer: Trainer, module: LightningModule, datamodule: LightningDataModule | None,
                            job_type: str | None = None) -> None:
    """Name, group and tag every W&B logger that has not started its run yet; names the user gave are kept.
    `job_type` (fit, test, ...) lets the dashboard filter training runs from evaluations."""
    hp = module.hparams
    method, dataset = method_label(hp), dataset_label(datamodule)
    train_prompts = hp.get("train_prompts") or {prompt_label(hp.get("eval_prompts", "text")): 1.0}
    tags = [method, *(f"prompt:{combo}" for combo in train_prompts)]
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger) or logger._experiment is not None:
            continue
        init = logger._wandb_init  # the arguments WandbLogger passes to wandb.init when the run starts
        if init.get("dir"):  # W&B's service process resolves a relative folder against its own start folder
            init["dir"] = logger._save_dir = os.path.abspath(init["dir"])
        if not init.get("name"):
            init["name"] = logger._name = f"{method}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not init.get("group"):
            init["group"] = dataset
        init["tags"] = list(dict.fromkeys([*(init.get("tags") or []), *tags]))
        if job_type and not init.get("job_type"):
            init["job_type"] = job_type


class SaveConfigToLoggers(SaveConfigCallback):
    """LightningCLI's config.yaml in the log folder, and the same resolved config in every W&B run:
    as the run's config (filterable on the dashboard) and as a config.yaml file in the run's files."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run.config.update({"config": yaml.safe_load(text)}, allow_val_change=True)
                (Path(run.dir) / "config.yaml").write_text(text)
