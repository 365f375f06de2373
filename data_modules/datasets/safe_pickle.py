"""Load refer-toolkit `refs(xxx).p` files without running code, or the same content as JSON."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

from samadapt.errors import MissingFileError, SamAdaptError, UnsafeFileError

HOW_TO_GET_REFS = (
    "For RefCOCO/RefCOCO+/RefCOCOg use the refer toolkit's data (e.g. download refcoco.zip from the "
    "refer project and unzip it into data/refcoco); for a synthetic stand-in run `samadapt synth`. "
    "See README."
)


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: refs files hold only lists, dicts, str and numbers."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        # latin1 lets python2 `str` objects (refer pickles are protocol 2, written by python2) load as str.
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeFileError(
            f"refusing to load {self._path}: it asks for the global '{module}.{name}', but refs files "
            f"hold only builtins (lists, dicts, strings, numbers), so it was not loaded. If the file is "
            f"yours, convert it to the JSON form (refs(xxx).json with the same content) and load that."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(
            f"refusing to load {self._path}: it contains a persistent id, but refs files hold only "
            f"builtins. Use the JSON form (refs(xxx).json) instead."
        )


def _check_refs(refs: Any, path: Path) -> list[dict]:
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise SamAdaptError(f"{path} is not a refs file: expected a list of dicts, got {type(refs).__name__}.")
    return refs


def load_refs_pickle(path: str | Path) -> list[dict]:
    """Read a refs pickle, refusing any global (class, function) it references."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "refs file", HOW_TO_GET_REFS)
    with open(path, "rb") as f:
        try:
            refs = _BuiltinsOnlyUnpickler(f, path).load()
        except UnsafeFileError:
            raise
        except Exception as e:  # truncated / not a pickle
            raise SamAdaptError(f"could not read the refs pickle {path}: {e}. Re-download or regenerate it.") from e
    return _check_refs(refs, path)


def load_refs_json(path: str | Path) -> list[dict]:
    """Read refs stored as JSON (the same list of dicts as the pickle)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "refs file", HOW_TO_GET_REFS)
    try:
        refs = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SamAdaptError(f"could not read the refs JSON {path}: {e}.") from e
    return _check_refs(refs, path)


def resolve_refs_path(path: str | Path) -> Path:
    """Pick the file to read for `refs(xxx).p` / `.json`: the .json beside it wins if it exists."""
    path = Path(path)
    json_path, pickle_path = path.with_suffix(".json"), path.with_suffix(".p")
    for candidate in (json_path, pickle_path):
        if candidate.is_file():
            return candidate
    raise MissingFileError(path, "refs file (.p or .json)", HOW_TO_GET_REFS)


def load_refs(path: str | Path) -> list[dict]:
    """Load `refs(xxx).p` or `refs(xxx).json`, preferring the .json when both exist."""
    resolved = resolve_refs_path(path)
    return load_refs_json(resolved) if resolved.suffix == ".json" else load_refs_pickle(resolved)
