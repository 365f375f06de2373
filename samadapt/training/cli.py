"""SamAdaptCLI: LightningCLI for the training verbs (fit, validate, test, predict), with samadapt's run setup."""

import os
import sys
import tempfile

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from samadapt.errors import SamAdaptError
from samadapt.training.module import SamAdaptModule
from samadapt.training.wandb_run import SaveConfigToLoggers, configure_wandb_loggers


class SamAdaptCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True, **kwargs):
        super().__init__(
            SamAdaptModule,
            LightningDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            **kwargs,
        )

    def after_instantiate_classes(self) -> None:
        configure_wandb_loggers(self.trainer, self.model, self.datamodule, self.subcommand)  # before W&B starts

    def before_fit(self) -> None:
        """Output folders must be writable; `--ckpt_path last`: resume from this configuration's last.ckpt."""
        check_output_folders(self.trainer)
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            from samadapt.training.resume import find_last_checkpoint

            found = find_last_checkpoint(self.trainer, self.model, self.datamodule)
            print(f"samadapt: resuming from {found}" if found else
                  "samadapt: no last.ckpt of this configuration yet: training from the start", file=sys.stderr)
            config["ckpt_path"] = found


def check_output_folders(trainer) -> None:
    """Stop before training if a folder the run writes to cannot be created or written (not after hours)."""
    folders = {trainer.default_root_dir, *(lg.save_dir for lg in trainer.loggers if getattr(lg, "save_dir", None))}
    folders |= {cb.dirpath for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
    for folder in sorted(str(f) for f in folders):
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise SamAdaptError(f"cannot write to output folder {folder} ({err.strerror}); choose another with "
                                "--trainer.default_root_dir (and the logger's save_dir).") from None


def finish_wandb() -> None:
    """Close the W&B run, if one is open, so the next run in this process starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
