"""Small file helpers shared by checkpoints, exports and reports."""

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from samadapt.errors import SamAdaptError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(SamAdaptError, OSError):
    """A file could not be written (full disk, a file where a folder should be, ...): one line for the user, and
    still an OSError for callers that carry on without the file (the pixel cache)."""


def _intact_note(path: Path, existed: bool) -> str:
    """Which files the failed write left as they were: the previous version, the newest other checkpoint."""
    note = f"the previous {path} is intact" if existed else f"no {path.name} was written"
    if path.suffix in (".ckpt", ".pth", ".pt"):
        others = [p for p in path.parent.glob(f"*{path.suffix}") if p != path and p.is_file()]
        if others:
            newest = max(others, key=lambda p: p.stat().st_mtime)
            note += f"; the newest other checkpoint there, {newest}, is intact{' too' if existed else ''}"
        if path.suffix == ".ckpt" and (existed or others):
            note += " (resume from it with --ckpt_path)"
    return note


def _write_error(path: Path, existed: bool, err: OSError) -> WriteError:
    if err.errno in _DISK_FULL:
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:,.0f} MB free"
        except OSError:
            free = "free space unknown"
        return WriteError(f"the disk is full ({free}): could not write {path}; {_intact_note(path, existed)}. "
                          "Free space or write elsewhere, then run again.")
    return WriteError(f"cannot write {path}: {err.strerror or err}; {_intact_note(path, existed)}. Check that the "
                      "folder can be created and written to.")


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | Path) -> None:
    """Flush a file's (or a folder's) data to the disk; folders that cannot be synced on this system are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if Path(path).is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not Path(path).is_dir() or err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write) -> None:
    """Call `write(tmp_path)`, then rename onto `path`: a crash mid-write leaves the old file intact.

    The file gets the permissions any new file gets (0666 less the umask; an existing file keeps its own), not
    mkstemp's 0600, so teammates can read checkpoints and exports. Its data reach the disk before the rename
    makes it visible, and the rename itself is flushed with the folder: after a power cut `path` is the old
    file or the whole new one, never an empty or partial one.

    A failed write (a full disk, a file where the folder should be) raises WriteError naming the file and what
    is still intact; the temporary file is removed.
    """
    path = Path(path)
    existed = path.is_file()
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder, and a file is expected here. Give a file name.")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if existed else 0o666 & ~current_umask())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except WriteError:
        raise
    except OSError as err:
        raise _write_error(path, existed, err) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch  # here: commands that only read JSON (compare, --help) start without loading torch

    def write(tmp: str) -> None:
        # through a Python file: a full disk raises OSError(ENOSPC) here, where torch's own file writer raises
        # RuntimeError("unexpected pos ...") that says nothing of the disk
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    atomic_write(path, write)


def atomic_write_json(obj, path: str | Path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)

    atomic_write(path, write)


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` where a command writes several files; an existing file there stops with one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SamAdaptError(f"{option} {path} is a file, but this command writes a folder of files there; give a "
                            "folder path (it is created if missing).")
    return path


def output_file(path: str | Path, option: str = "--out") -> Path:
    """`path` where a command writes one file; an existing folder there stops with one line."""
    path = Path(path)
    if path.is_dir():
        raise SamAdaptError(f"{option} {path} is a folder, but this command writes one file there; give a file "
                            "path.")
    return path
