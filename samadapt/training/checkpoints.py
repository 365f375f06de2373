"""A training checkpoint read safely, and checked against the experiment it is given to.

`read_checkpoint` loads with weights_only=True (tensors and plain values only: a file that would run code is
refused) and turns every failure into one SamAdaptError naming the file. `setting_differences` lists the
saved settings that differ from the run's: a checkpoint's weights mean something only with the method and
model settings that made them, and a resume continues exactly only with the training and data settings too.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from samadapt.errors import MissingFileError, SamAdaptError, UnsafeFileError

# Settings that change neither the weights nor the samples a run trains on: speed, memory, where files live,
# and how evaluation is done. They may differ between a checkpoint and the run that reads it.
RUNTIME = {
    "embedding_cache_mb", "embedding_cache_dir", "embedding_cache_disk_mb", "fused_attention",
    "activation_checkpointing", "compile",  # model
    "eval_prompts", "threshold", "threshold_on", "strict_pk", "metrics", "eval_resolution",  # evaluation
    "num_workers", "eval_batch_size", "max_eval_samples", "test_splits", "pixel_cache_dir", "pixel_cache_mb",  # data
}
# Settings that are paths: a file moved to another folder is the same file (a run trained on a cluster and
# tested on a laptop), so only the names are compared.
PATHS = {"sam_checkpoint", "name_or_path", "pretrained", "root", "image_dir"}


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6 (a zip archive)
# torch.save's older format opens with a pickled magic number (torch/serialization.py, MAGIC_NUMBER)
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class DamagedCheckpointError(SamAdaptError):
    """A checkpoint file exists but cannot be read as a checkpoint."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at `path` (tensors memory-mapped where the format allows), or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "checkpoint", "Check --ckpt_path (a .ckpt file written by samadapt fit).")
    with open(path, "rb") as head:
        start = head.read(len(LEGACY_MAGIC))
    if not start:
        raise DamagedCheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if not start.startswith(ZIP_MAGIC) and start != LEGACY_MAGIC:
        raise DamagedCheckpointError(f"checkpoint {path} cannot be read (not a PyTorch checkpoint file)")
    try:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # an old, non-zip torch file: read it whole
                raise
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests weights_only=False: never relay that advice for a file of unknown origin.
        raise UnsafeFileError(f"checkpoint {path} holds Python objects beyond tensors and plain values (loading "
                              "it could run code), or is damaged: refused; samadapt checkpoints hold neither") from None
    except Exception:  # a truncated zip, damaged records, an I/O error
        raise DamagedCheckpointError(f"checkpoint {path} cannot be read (truncated or damaged)") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise DamagedCheckpointError(f"{path} is not a training checkpoint (no state_dict): give a .ckpt written "
                                     "by samadapt fit")
    return saved


def setting_differences(saved: dict, module: Any, datamodule: Any, resuming: bool) -> list[tuple[str, Any, Any]]:
    """(key, ours, the checkpoint's) of every setting that must agree and does not.

    Always the model settings (SamAdaptModel's: method, SAM, text encoder, ...); when `resuming` (fit) also the
    training and data settings, since the resumed run continues the saved one step by step.
    """
    from samadapt.model import model_defaults

    ours = {"model": dict(module.hparams), "data": dict(getattr(datamodule, "hparams", {}) or {})}
    theirs = {"model": dict(saved.get("hyper_parameters") or {}),
              "data": dict(saved.get("datamodule_hyper_parameters") or {})}
    model_keys = set(model_defaults())
    found = []
    for part in ("model", "data") if resuming else ("model",):
        for key in sorted(set(ours[part]) | set(theirs[part])):
            if key in RUNTIME or key.startswith("_") or (not resuming and key not in model_keys):
                continue
            mine, other = ours[part].get(key), theirs[part].get(key)
            if comparable(mine, key) != comparable(other, key):
                found.append((f"{part}.{key}", mine, other))
    return found


def comparable(value: Any, key: str = "") -> Any:
    """A setting in comparable form: tuples and lists alike, nested dicts sorted, paths by file name."""
    if isinstance(value, dict):
        return {str(k): comparable(v, str(k)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    if key in PATHS and isinstance(value, (str, os.PathLike)):
        return Path(value).name
    return value


def describe_differences(path: str | os.PathLike, differences: list[tuple[str, Any, Any]]) -> str:
    listed = "; ".join(f"{key}: ours {_short(mine)}, the checkpoint's {_short(other)}"
                       for key, mine, other in differences)
    return (f"checkpoint {path} was made with other settings than this experiment ({listed}). Give the --config "
            "files it was trained with, or drop the differing options")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
