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
    saved model and data hyper-parameters equal this run's, so another experiment's checkpoint is never picked.
    """
    roots = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
    if trainer.loggers and getattr(trainer.loggers[0], "save_dir", None):
        roots.add(Path(trainer.loggers[0].save_dir))
    roots.add(Path(trainer.default_root_dir))
    found = {p for root in roots if root.is_dir() for p in root.rglob("last*.ckpt") if p.is_file()}
    want_model = _plain(dict(module.hparams))
    want_data = _plain(dict(getattr(datamodule, "hparams", {}) or {}))
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # unreadable or not ours: not a candidate
            continue
        if (_plain(saved.get("hyper_parameters", {})) == want_model
                and _plain(saved.get("datamodule_hyper_parameters", {})) == want_data):
            return str(path)
    return None


def _plain(value: Any) -> Any:
    """Hyper-parameters in comparable form (tuples and lists alike, nested dicts sorted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
