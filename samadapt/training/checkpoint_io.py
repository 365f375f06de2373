"""Lightning checkpoints written atomically: a temporary file in the same folder, then a rename.

A crash or a kill during a save leaves the previous checkpoint file as it was (rename is atomic on one
file system); a leftover temporary file is named `.<name>.<random>.tmp` and never mistaken for a checkpoint.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from samadapt.io import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)
