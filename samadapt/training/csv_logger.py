"""Lightning's CSVLogger with save_dir optional: left unset, samadapt's CLI puts it under trainer.default_root_dir,
so `--trainer.default_root_dir=DIR` moves the whole run (Lightning's own CSVLogger requires a save_dir)."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger


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
