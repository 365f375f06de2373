"""The optimizer and its schedule, and the learning rate for a recipe's global batch.

Adam(W) over the trainable parameters only; a linear warm-up, then a constant or cosine rate, stepped every
optimizer step. By default the warm-up factor is (step + 1) / warmup and the cosine ends at zero;
`warmup_start_lr` and `min_lr` give the released DIT code's 'wcosine' (utils/utils.py, get_lr_scheduler): a
warm-up linear from warmup_start_lr, then a cosine from lr down to min_lr.
global batch = batch per device x devices x nodes x gradient-accumulation steps. A recipe states its global batch
(DIT: 64); `global_batch_accumulation` finds the accumulation that keeps it on the hardware at hand, or says which
setting to change. Learning-rate scaling is explicit: off unless asked for.
"""

import math
from collections.abc import Iterable
from typing import Literal

import torch

from samadapt.errors import SamAdaptError

LrScaling = Literal["none", "linear", "sqrt"]


def global_batch_accumulation(global_batch: int, batch_per_device: int, devices: int, nodes: int,
                              configured_accumulation: int = 1) -> int:
    """Gradient-accumulation steps so that batch_per_device x devices x nodes x steps == global_batch."""
    per_step = batch_per_device * devices * nodes
    processes = devices * nodes
    if global_batch <= 0 or global_batch % per_step:
        if global_batch <= 0 or global_batch % processes:
            hint = f"it must be a multiple of devices x nodes = {processes}; use a device count that divides it"
        else:
            fitting = max(b for b in range(1, batch_per_device + 1) if global_batch % (b * processes) == 0)
            hint = f"set data.init_args.batch_size to {fitting}"
        raise SamAdaptError(
            f"global batch {global_batch} cannot be met: batch_size {batch_per_device} x {devices} device(s) x "
            f"{nodes} node(s) = {per_step} per step does not divide it; {hint}, or change model.global_batch_size"
        )
    steps = global_batch // per_step
    if configured_accumulation not in (1, steps):
        raise SamAdaptError(
            f"trainer.accumulate_grad_batches={configured_accumulation} contradicts model.global_batch_size="
            f"{global_batch} ({steps} steps of {per_step} needed); remove accumulate_grad_batches, samadapt sets it"
        )
    return steps


def scaled_lr(lr: float, global_batch: int, reference_batch: int, rule: LrScaling) -> float:
    """The recipe's lr (tuned at `reference_batch`) for `global_batch`: unchanged, linear or square-root rule."""
    if rule == "none" or global_batch == reference_batch:
        return lr
    ratio = global_batch / reference_batch
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


def effective_lr(trainer, *, lr: float, lr_scaling: LrScaling, lr_reference_batch: int | None) -> float:
    """`lr`, scaled from the global batch it was tuned at to this trainer's (unless lr_scaling is "none")."""
    if lr_scaling == "none":
        return lr
    if not lr_reference_batch:
        raise SamAdaptError(f"lr_scaling={lr_scaling} needs model.lr_reference_batch, the global batch at "
                            f"which lr={lr} was tuned (e.g. 64 for the DIT recipes)")
    global_batch = (trainer.datamodule.batch_size * trainer.num_devices * trainer.num_nodes
                    * trainer.accumulate_grad_batches)
    return scaled_lr(lr, global_batch, lr_reference_batch, lr_scaling)


def warmup_then(scheduler: Literal["none", "cosine"], warmup: int, total: int, *, lr: float = 1.0,
                warmup_start_lr: float | None = None, min_lr: float = 0.0):
    """The lr factor (of `lr`) at each optimizer step: linear warm-up over `warmup` steps, then 1, or a cosine that
    reaches min_lr at `total`. The warm-up factor is (step + 1) / warmup, or, with `warmup_start_lr`, linear from
    warmup_start_lr at step 0: lr(step) = warmup_start_lr + step * (lr - warmup_start_lr) / warmup."""
    start = None if warmup_start_lr is None else warmup_start_lr / lr
    floor = min_lr / lr if min_lr else 0.0  # 0 by default: floor + (1 - floor) * c is c, today's factor exactly

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup if start is None else start + step * (1 - start) / warmup
        if scheduler == "cosine":
            cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return floor + (1 - floor) * cosine
        return 1.0

    return factor


def check_schedule(scheduler: str, lr: float, warmup_start_lr: float | None, min_lr: float, warms_up: bool) -> None:
    """A schedule option that would be ignored, or a rate outside [0, lr], is an error."""
    if warmup_start_lr is not None and not warms_up:
        raise SamAdaptError(f"warmup_start_lr={warmup_start_lr} is where the warm-up starts: it needs "
                            "model.warmup_steps or model.warmup_epochs")
    if min_lr and scheduler != "cosine":
        raise SamAdaptError(f"min_lr={min_lr} is where the cosine ends: it needs model.scheduler=cosine "
                            f"(got {scheduler!r}); remove min_lr or set scheduler: cosine")
    for name, value in (("min_lr", min_lr), ("warmup_start_lr", warmup_start_lr)):
        if value is not None and not 0 <= value <= lr:
            raise SamAdaptError(f"{name}={value} must lie between 0 and lr={lr}")


def check_optimizer_args(lr: float, betas, eps: float, weight_decay: float, warmup_steps: int,
                         warmup_epochs: float) -> None:
    """Values torch.optim would refuse with a traceback (or accept and diverge on), refused in one line."""
    if not math.isfinite(lr) or lr <= 0:
        raise SamAdaptError(f"model.lr={lr} must be a positive number (the recipes use 1e-4 to 1e-3)")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise SamAdaptError(f"model.betas={list(betas)} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    if not eps > 0:
        raise SamAdaptError(f"model.eps={eps} must be positive, e.g. 1e-8")
    if not weight_decay >= 0:
        raise SamAdaptError(f"model.weight_decay={weight_decay} must be 0 or positive")
    if warmup_steps < 0 or not warmup_epochs >= 0:
        raise SamAdaptError(f"model.warmup_steps={warmup_steps} and model.warmup_epochs={warmup_epochs} must be 0 or "
                            "positive")


def configure_optimization(
    params: Iterable[torch.nn.Parameter],
    trainer,
    *,
    optimizer: Literal["adamw", "adam"],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    scheduler: Literal["none", "cosine"],
    warmup_steps: int,
    warmup_epochs: float,
    lr_scaling: LrScaling,
    lr_reference_batch: int | None,
    eps: float = 1e-8,
    min_lr: float = 0.0,
    warmup_start_lr: float | None = None,
):
    """What LightningModule.configure_optimizers returns: the optimizer, with its per-step schedule if any."""
    check_optimizer_args(lr, betas, eps, weight_decay, warmup_steps, warmup_epochs)
    optimizer_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    lr = effective_lr(trainer, lr=lr, lr_scaling=lr_scaling, lr_reference_batch=lr_reference_batch)
    built = optimizer_class(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    check_schedule(scheduler, lr, warmup_start_lr, min_lr, warms_up=bool(warmup_steps or warmup_epochs))
    if scheduler == "none" and not warmup_steps and not warmup_epochs:
        return built
    total = max(1, trainer.estimated_stepping_batches)
    warmup = warmup_steps
    if warmup_epochs:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        warmup = int(warmup_epochs * total / epochs)
    factor = warmup_then(scheduler, warmup, total, lr=lr, warmup_start_lr=warmup_start_lr, min_lr=min_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(built, factor)
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
