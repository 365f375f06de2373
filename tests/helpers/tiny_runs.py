"""Demo-sized runs for the tests of what users do with results: fit 2 steps, test, keep the run folder."""

import json
from pathlib import Path

from samadapt.commands.demo_stages import build_cli
from samadapt.training.cli import finish_wandb
from tests.commands.test_cli import tiny_overrides


def fit_and_test(experiment: str, out: Path, run_name: str, sam: str, shapes: str, bert: str,
                 extra: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Train `experiment` for 2 steps on the tiny fixtures and test it; return (run folder, last.ckpt).
    Logs to CSV only: starting W&B's service costs seconds (tests/test_wandb_results.py covers W&B)."""
    csv_only = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(out / "logs"), "name": run_name}}
    overrides = [*tiny_overrides(sam, shapes, bert), "--trainer.val_check_interval=2",
                 "--trainer.check_val_every_n_epoch=null", f"--trainer.logger={json.dumps(csv_only)}", *extra]
    cli = build_cli(experiment, out, out / "data", overrides, run_name)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    finish_wandb()
    return Path(cli.trainer.log_dir), Path(cli.trainer.checkpoint_callback.last_model_path)
