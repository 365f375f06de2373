"""Lightning's CSVLogger with save_dir optional: left unset, samadapt's CLI puts it under trainer.default_root_dir,
so `--trainer.default_root_dir=DIR` moves the whole run (Lightning's own CSVLogger requires a save_dir)."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from samadapt.training.run_identity import rows_up_to


class CSVLogger(LightningCSVLogger):
    def __init__(self, save_dir: str | None = None, name: str | None = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100):
        """
        Args:
            save_dir: the folder of the logs (default: trainer.default_root_dir under samadapt's CLI, else ".")
            name: the experiment's folder inside save_dir
            version: the version folder (default: the next version_N)
            prefix: put in front of every metric name
            flush_logs_every_n_steps: how often metrics.csv is written
        """
        super().__init__(save_dir if save_dir is not None else ".", name, version, prefix, flush_logs_every_n_steps)
        self.keep_rows_until: int | None = None  # set when a resumed run continues this version folder

    @property
    @rank_zero_experiment
    def experiment(self):
        """Lightning's writer deletes an existing metrics.csv; a continued run keeps its rows up to the resumed step."""
        if self._experiment is not None or self.keep_rows_until is None:
            return super().experiment
        path = Path(self.log_dir) / "metrics.csv"
        rows, columns = rows_up_to(path, self.keep_rows_until)
        writer = super().experiment
        if rows:
            columns = sorted(columns)
            with path.open("w", newline="") as file:
                out = csv.DictWriter(file, fieldnames=columns)
                out.writeheader()
                out.writerows(rows)
            writer.metrics_keys = columns
        return writer
