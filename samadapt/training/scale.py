"""Keeping a recipe's global batch on any number of devices and nodes, and sharding for full fine-tuning.

global batch = batch per device x devices x nodes x gradient-accumulation steps. A recipe states its global
batch (DIT: 64); `global_batch_accumulation` finds the accumulation that keeps it on the hardware at hand, or
says which setting to change. Learning-rate scaling is explicit: off unless asked for.
"""

import math
from typing import Literal

from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

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


def shard_for_full_finetune(model: nn.Module, mesh) -> None:
    """FSDP2 (`fully_shard`) over the image-encoder blocks, the text encoder, then the whole model.

    Called from `configure_model` under FullShardStrategy (below); parameters, gradients and optimizer
    state are split across the data-parallel processes, so ViT-H fits where a full replica per GPU does not.
    """
    from torch.distributed.fsdp import fully_shard

    for block in model.sam.image_encoder.blocks:
        fully_shard(block, mesh=mesh)
    if model.text_encoder is not None and any(p.requires_grad for p in model.text_encoder.parameters()):
        fully_shard(model.text_encoder, mesh=mesh)
    fully_shard(model, mesh=mesh)
    rank_zero_info(f"FSDP2: {sum(p.numel() for p in model.parameters()):,} parameters sharded over {mesh.size()} "
                   "processes")


class FullShardStrategy(ModelParallelStrategy):
    """Lightning's FSDP2 strategy with every process in one data-parallel group (no tensor parallelism).

    ModelParallelStrategy's "auto" data-parallel size means one group per node; full fine-tuning wants the
    parameters sharded over all devices, and the data split over all of them, so the size is nodes x devices.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # private in Lightning 2.6: set before use
        super().setup_environment()
