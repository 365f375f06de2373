"""Sharding for full fine-tuning: FSDP2 over SAM's encoder blocks, the text encoder and the whole model.

A recipe's global batch on any hardware, and lr scaling, are set with the optimizer (training/optim.py).
"""

from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


def shard_for_full_finetune(model: nn.Module, mesh) -> None:
    """FSDP2 (`fully_shard`) over the image-encoder blocks, the text encoder, then the whole model.

    Called from `configure_model` under FullShardStrategy (below); parameters, gradients and optimizer
    state are split across the data-parallel processes, so ViT-H fits where a full replica per GPU does not.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):  # configure_model runs again for the test after fit: sharded once is enough
        return
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
