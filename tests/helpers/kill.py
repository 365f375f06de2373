"""Test helper loaded by training subprocesses: SIGKILL the process itself at a chosen point."""

import os
import signal

import lightning as L
import torch


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(L.Callback):
    """when: "after_save" (right after the checkpoint of `step` is on disk), "mid_interval" (after the optimizer
    step `step`, between checkpoints) or "during_save" (half-way through writing the checkpoint of `step`)."""

    def __init__(self, step: int, when: str) -> None:
        self.step, self.when = step, when

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Lightning runs ModelCheckpoint hooks last: step `step`'s checkpoint is on disk when the next batch starts.
        if trainer.global_step == self.step and self.when == "after_save":
            _die()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.when == "mid_interval":
            _die()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.global_step != self.step or self.when != "during_save":
            return
        real_save = torch.save

        def half_then_die(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if hasattr(f, "fileno"):  # samadapt.io.atomic_torch_save hands torch an open file
                f.flush()
                f.truncate(os.fstat(f.fileno()).st_size // 2)
            else:
                with open(f, "r+b") as fh:
                    fh.truncate(os.path.getsize(f) // 2)
            _die()

        torch.save = half_then_die
