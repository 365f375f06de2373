"""Non-finite loss guard: a NaN or Inf loss stops the run (default) or its optimizer step is skipped.

Stop: the run ends before the bad gradients reach the weights, with one message naming the step and the
batch's sample ids; the checkpoints written so far are untouched (nothing is saved on the way out).
Skip: the step's gradients are dropped (the optimizer leaves the weights and its moments alone), the
batch is counted (logged as train/nonfinite_skipped) and training goes on.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import lightning as L
import torch

from samadapt.errors import SamAdaptError

log = logging.getLogger(__name__)


class NonFiniteLossError(SamAdaptError):
    """Training produced a NaN or Inf loss."""


def describe(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return str(value) if math.isinf(value) else "non-finite in another process"


class NonFiniteLossGuard(L.Callback):
    def __init__(self, action: Literal["stop", "skip"] = "stop") -> None:
        if action not in ("stop", "skip"):
            raise SamAdaptError(f"NonFiniteLossGuard action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skipped = 0
        self._sample_ids: list[str] = []
        self._bad_since_step = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ids = batch.get("sample_id", []) if isinstance(batch, dict) else []
        self._sample_ids = [str(i) for i in ids]

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:  # every rank must stop (or skip) together, or the others wait forever
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        value = loss.detach().float().sum().item()
        where = (f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
                 f"{trainer.fit_loop.epoch_loop.batch_idx}), samples {', '.join(self._sample_ids) or '?'}")
        if self.action == "stop":
            saved = [getattr(cb, "last_model_path", "") for cb in trainer.checkpoint_callbacks]
            last = next((path for path in saved if path), "none written yet")
            raise NonFiniteLossError(
                f"loss is {describe(value)} at {where}; the run stopped before updating the "
                f"weights (last checkpoint: {last}). Lower model.lr, check those samples, or skip such batches "
                "with the NonFiniteLossGuard callback's action: skip."
            )
        log.warning("non-finite loss at %s: skipping this optimizer step", where)
        self._bad_since_step = True

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.action != "skip":
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not self._bad_since_step and all(bool(torch.isfinite(p.grad).all()) for p in params):
            return
        for p in params:  # no gradient: Adam(W) leaves the weight and its moments as they are
            p.grad = None
        self.skipped += 1
        self._bad_since_step = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.action == "skip":
            pl_module.log("train/nonfinite_skipped", float(self.skipped), on_step=True, on_epoch=False,
                          batch_size=max(1, len(self._sample_ids)))

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
