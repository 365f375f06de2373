"""Exact resume: the random states a run depends on travel in its checkpoints.

Lightning saves the weights, optimizer, scheduler, loop progress and the train loader's position
(data_modules/resumable.py); it does not save random states. This callback adds the global torch, numpy
and python states and the module's prompt-kind generator, one set per process, and puts them back just
before the first training batch after a restart (after on_fit_start, which reseeds the prompt generator).
The data pipeline does not depend on them: every sample is seeded by its position (resumable.py).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from samadapt.errors import SamAdaptError
from samadapt.training import run_identity
from samadapt.training.checkpoints import (
    DamagedCheckpointError,
    describe_differences,
    read_checkpoint,
    setting_differences,
)

KEY = "samadapt_random_states"


def capture(module: L.LightningModule) -> dict[str, Any]:
    """This process's random states as plain types and tensors (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    prompt_rng = getattr(module, "_prompt_rng", None)
    if isinstance(prompt_rng, random.Random):
        state["prompt_rng"] = prompt_rng.getstate()
    return state


def restore(module: L.LightningModule, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "prompt_rng" in state and isinstance(getattr(module, "_prompt_rng", None), random.Random):
        module._prompt_rng.setstate(_as_tuples(state["prompt_rng"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class ExactResume(L.Callback):
    """Saves every process's random states in checkpoints and restores them when training restarts."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Every rank runs this hook (Lightning saves on all ranks, rank 0 writes): gather all ranks' states.
        states = [capture(pl_module)]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states = [None] * trainer.world_size  # type: ignore[list-item]
            dist.all_gather_object(states, capture(pl_module))
        checkpoint[KEY] = states
        checkpoint[run_identity.KEY] = run_identity.logger_versions(trainer)  # a resume continues this run

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._pending:
            return
        states, self._pending = self._pending, None
        restore(pl_module, states[trainer.global_rank] if len(states) == trainer.world_size else states[0])


def find_last_checkpoint(trainer: L.Trainer, module: L.LightningModule, datamodule: Any) -> str | None:
    """The newest `last*.ckpt` written by a run of this same configuration, or None.

    Lightning's own `ckpt_path="last"` only looks in the new run's (empty) version folder; here every
    checkpoint folder of the run's logger (or default_root_dir) is searched, and a candidate counts only if its
    saved model and data settings equal this run's (checkpoints.setting_differences), so another experiment's
    checkpoint is never picked. A damaged file newer than the chosen one stops the run (DamagedCheckpointError
    naming it and the newest intact checkpoint of this configuration): it may be this run's own progress, and
    silently starting over or going back would lose it without a word.
    """
    roots = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
    if trainer.loggers and getattr(trainer.loggers[0], "save_dir", None):
        roots.add(Path(trainer.loggers[0].save_dir))
    roots.add(Path(trainer.default_root_dir))
    found = {p for root in roots if root.is_dir() for p in root.rglob("*.ckpt") if p.is_file()}
    newest_first = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    for path in (p for p in newest_first if p.name.startswith("last")):
        try:
            saved = read_checkpoint(path)
        except SamAdaptError as err:
            intact = newest_intact(newest_first, module, datamodule)
            advice = (f"the newest intact checkpoint of this configuration is {intact}: resume from it with "
                      f"--ckpt_path={intact} (and move the damaged file away)" if intact else
                      "there is no intact checkpoint of this configuration: move the damaged file away and train "
                      "from the start")
            raise DamagedCheckpointError(f"{err}; {advice}") from None
        if not setting_differences(saved, module, datamodule, resuming=True):
            return str(path)
    return None


def newest_intact(paths: list[Path], module: L.LightningModule, datamodule: Any) -> Path | None:
    """The first of `paths` (newest first) that reads and was made by this configuration."""
    for path in paths:
        try:
            saved = read_checkpoint(path)
        except SamAdaptError:
            continue
        if not setting_differences(saved, module, datamodule, resuming=True):
            return path
    return None


def check_ckpt_path(path: str | None, module: L.LightningModule, datamodule: Any, resuming: bool) -> None:
    """An explicit --ckpt_path must read and have been made with this experiment's settings (see
    checkpoints.setting_differences); Lightning's own names (last, best, hpc, registry) are left to it."""
    if not path or path in ("last", "best", "hpc") or path.startswith("registry"):
        return
    differences = setting_differences(read_checkpoint(path), module, datamodule, resuming)
    if differences:
        raise SamAdaptError(describe_differences(path, differences))
