"""Progress that reads right: steps of max_steps in a step-based run, and plain lines where there is no terminal.

Lightning's RichProgressBar counts batches of the epoch and titles a run with max_epochs -1 "Epoch 0/-2"; in a
SLURM log (stdout not a terminal) it leaves either nothing or carriage-return redraws. StepProgressBar keeps Rich's
bar in a terminal, counting optimizer steps of max_steps when the run sets one, and otherwise prints one line every
`every_seconds`: `[train] step 120/1000 (12%) epoch 0 | 1.31 s/step | ETA 0:19:12 | train/loss 0.4312`.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from lightning.pytorch.callbacks import RichProgressBar


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class StepProgressBar(RichProgressBar):
    def __init__(self, every_seconds: float = 30.0, lines: bool | None = None, **kwargs):
        """
        Args:
            every_seconds: without a terminal, the time between two progress lines (the first and last step
                always print)
            lines: print lines instead of the bar (null: when stdout is not a terminal)
            kwargs: RichProgressBar's (refresh_rate, leave, theme, console_kwargs)
        """
        super().__init__(**kwargs)
        self.every_seconds = float(every_seconds)
        self.lines = (not sys.stdout.isatty()) if lines is None else bool(lines)
        self._started = self._last_line = 0.0
        self._first_step = 0

    @property
    def is_enabled(self) -> bool:
        return not self.lines and super().is_enabled

    def _step_based(self) -> bool:
        return self.trainer.max_steps is not None and self.trainer.max_steps > 0

    # ---- the bar, in a terminal ------------------------------------------------------------------
    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._step_based() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if self._step_based():
            return f"Step (epoch {current_epoch})"
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if self._step_based():  # Rich restarts the bar at 0 each epoch; steps continue
            self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._started = self._last_line = time.monotonic()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._step_based():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        else:
            if self.is_enabled and self.train_progress_bar_id is None:
                self._initialize_train_progress_bar_id()
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)
            self.refresh()
        if self.lines and trainer.is_global_zero:
            self._maybe_print_line(trainer, pl_module, batch_idx)

    # ---- lines, without a terminal ----------------------------------------------------------------
    def _maybe_print_line(self, trainer, pl_module, batch_idx: int) -> None:
        now = time.monotonic()
        done = trainer.global_step - self._first_step
        last = self._step_based() and trainer.global_step >= trainer.max_steps
        if done > 1 and not last and now - self._last_line < self.every_seconds:
            return
        self._last_line = now
        print(self.progress_line(trainer, pl_module, batch_idx, now), flush=True)

    def progress_line(self, trainer, pl_module, batch_idx: int, now: float) -> str:
        done = max(trainer.global_step - self._first_step, 1)
        per_step = (now - self._started) / done
        if self._step_based():
            total = trainer.max_steps
            where = f"step {trainer.global_step}/{total} ({100 * trainer.global_step / total:.0f}%) " \
                    f"epoch {trainer.current_epoch}"
            eta = f" | ETA {_duration(per_step * (total - trainer.global_step))}"
        else:
            epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            where = f"epoch {trainer.current_epoch}{epochs} batch {batch_idx + 1}/{super().total_train_batches} " \
                    f"(step {trainer.global_step})"
            eta = ""
        metrics = self.get_metrics(trainer, pl_module)
        shown = "".join(f" | {k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k != "v_num")
        return f"[train] {where} | {per_step:.2f} s/step{eta}{shown}"

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.lines and trainer.is_global_zero and not trainer.sanity_checking and trainer.state.fn == "fit":
            values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            first = [k for k in ("val/oIoU", "val/mIoU") if k in values]  # the headline numbers, then the rest
            names = first + sorted(k for k in values if k not in first)
            shown = ", ".join(f"{k} {values[k]:.4f}" for k in names[:6])
            print(f"[val] step {trainer.global_step}: {shown}", flush=True)
