"""The known-harmless messages of a samadapt run, silenced here and nowhere else; every other warning still shows.

- Lightning, "Found N module(s) in eval mode at the start of training" (lightning/pytorch/loops/fit_loop.py,
  `_warn_if_modules_in_eval_mode`): the frozen SAM and text encoder stay in eval mode on purpose.
- Lightning on torch 2.14, "`isinstance(treespec, LeafSpec)` is deprecated" (lightning/pytorch/utilities/
  _pytree.py): Lightning's own code, raised on every batch it moves.
- W&B, "The anonymous setting has no effect" (wandb/sdk/wandb_settings.py, `validate_anonymous`): Lightning's
  WandbLogger always passes `anonymous`, even unset; a terminal note, not a Python warning, so the setting is
  dropped before W&B starts.
- The model summary's "Total FLOPs: 0" and its column of zeros: Lightning counts FLOPs only through an
  `example_input_array`, which a batch of images, prompts and text is not; ModelSummary leaves them out when 0.
"""

from __future__ import annotations

import warnings

from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count

# Regular expressions matched against the start of a warning's message (warnings.filterwarnings).
HARMLESS_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def silence_known_warnings() -> None:
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def drop_wandb_anonymous(loggers) -> None:
    """W&B notes that `anonymous` has no effect whenever it is passed, and Lightning always passes it."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is None:  # before the run starts
            logger._wandb_init.pop("anonymous", None)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary, without the FLOPs column and total when nothing was counted."""

    @staticmethod
    def summarize(summary_data, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int, **summarize_kwargs) -> None:
        if total_flops:
            RichModelSummary.summarize(summary_data, total_parameters, trainable_parameters, model_size,
                                       total_training_modes, total_flops, **summarize_kwargs)
            return
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith(("Params", "In ", "Out ")) else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        grid = Table.grid(expand=True)
        grid.add_column()
        frozen = total_parameters - trainable_parameters
        for label, value in (("Trainable params", get_human_readable_count(trainable_parameters)),
                             ("Non-trainable params", get_human_readable_count(frozen)),
                             ("Total params", get_human_readable_count(total_parameters)),
                             ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
                             ("Modules in train mode", total_training_modes["train"]),
                             ("Modules in eval mode", total_training_modes["eval"])):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console = get_console()
        console.print(table)
        console.print(grid)
