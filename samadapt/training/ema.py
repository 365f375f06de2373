"""Exponential moving average of the trainable weights, swapped in for evaluation (as the DIT recipe does)."""

from contextlib import contextmanager

import torch
from torch import nn

from samadapt.errors import SamAdaptError


class EMA:
    """Shadow copies of `module`'s trainable parameters, updated after every optimizer step.

    Plain (warmup=False): the shadow starts at the weights seen by the first update (or a checkpoint's EMA
    state), so weights loaded after construction are never shadowed by stale initial values; decay is constant.
    warmup=True, as the released DIT code (utils/utils.py, class EMA; tf.train.ExponentialMovingAverage's rule):
    the shadow starts at the weights the module has now (the pretrained ones) and update t (from 0) uses
    decay min(decay, (t + 1) / (t + 10)), so early shadows follow the weights closely.
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise SamAdaptError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0
        if warmup:
            self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    def current_decay(self) -> float:
        return min(self.decay, (self.updates + 1) / (self.updates + 10)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self) -> None:
        if self.shadow is None:
            self.shadow = {n: p.detach().clone() for n, p in self.params.items()}
            self.updates += 1
            return
        decay = self.current_decay()
        for name, param in self.params.items():
            self.shadow[name] = self.shadow[name].to(param.device)  # follows the module across devices
            self.shadow[name].lerp_(param.detach(), 1.0 - decay)
        self.updates += 1

    @contextmanager
    def applied(self):
        """Inside the block the module holds the EMA weights; the training weights come back afterwards."""
        if self.shadow is None:
            yield
            return
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name].to(param.device))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The shadow weights by name (what an export ships); the update count travels beside it."""
        return None if self.shadow is None else {n: t.detach().cpu() for n, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor] | None, updates: int | None = None) -> None:
        if updates is not None:
            self.updates = int(updates)
        if state is None:
            self.shadow = None
            return
        missing = set(self.params) - set(state)
        if missing:
            raise SamAdaptError(f"EMA state lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")
        self.shadow = {n: state[n].clone() for n in self.params}
