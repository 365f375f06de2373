"""Files samadapt writes (checkpoints, exports, reports): the user's umask, on the disk before they appear."""

import os
import stat
from pathlib import Path

import pytest
import torch

from samadapt.io import atomic_write_json, current_umask
from samadapt.training.checkpoint_io import AtomicCheckpointIO


@pytest.fixture
def umask():
    """Set a umask for the test, restore the previous one after it."""
    saved = []

    def set_mask(mask):
        saved.append(os.umask(mask))

    yield set_mask
    if saved:
        os.umask(saved[0])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_checkpoints_and_reports_get_the_umask_permissions(mask, umask, tmp_path):
    umask(mask)
    assert current_umask() == mask
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "last.ckpt")
    atomic_write_json({"a": 1}, tmp_path / "results.json")
    assert mode(tmp_path / "last.ckpt") == mode(tmp_path / "results.json") == 0o666 & ~mask  # 0644 under 022


def test_a_rewritten_file_keeps_its_permissions(umask, tmp_path):
    umask(0o022)
    path = tmp_path / "results.json"
    atomic_write_json({"a": 1}, path)
    path.chmod(0o640)
    atomic_write_json({"a": 2}, path)
    assert mode(path) == 0o640


def test_data_reach_the_disk_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "run" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).parent == path.parent and Path(events[0][1]).name.startswith(".last.ckpt.")
    assert events[2][1] == str(path.parent)
    assert torch.load(path, weights_only=True) == {"step": 3}
