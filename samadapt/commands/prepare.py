"""`samadapt prepare refcoco --root DIR`: convert every refs(*).p under DIR/<dataset>/ to refs(*).json, once.

The pickles are read with the unpickler that refuses every global, and each JSON is written atomically, so
an interrupted run leaves no half file; the loaders prefer the .json, so later runs never unpickle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_modules.datasets.safe_pickle import HOW_TO_GET_REFS, load_refs_pickle
from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.io import atomic_write_json


def prepare_refcoco(root: str | Path, force: bool = False) -> list[tuple[Path, int, str]]:
    """Convert the pickles; returns (json path, number of refs, "written" | "up to date") per file."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(root, "RefCOCO data root", HOW_TO_GET_REFS)
    pickles = sorted(root.glob("*/refs(*).p"))
    if not pickles:
        raise MissingFileError(root / "<dataset>" / "refs(<split_by>).p", "refs pickle", HOW_TO_GET_REFS)
    done = []
    for pickle_path in pickles:
        json_path = pickle_path.with_suffix(".json")
        if json_path.is_file() and not force and json_path.stat().st_mtime >= pickle_path.stat().st_mtime:
            done.append((json_path, -1, "up to date"))
            continue
        refs = load_refs_pickle(pickle_path)
        atomic_write_json(refs, json_path)
        done.append((json_path, len(refs), "written"))
    return done


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="samadapt prepare", description="one-off conversions of downloaded datasets")
    p.add_argument("dataset", choices=["refcoco"], help="refcoco: refs(*).p -> refs(*).json (RefCOCO, +, g)")
    p.add_argument("--root", required=True, help="the folder holding refcoco/, refcoco+/, refcocog/")
    p.add_argument("--force", action="store_true", help="rewrite JSON files that are already up to date")
    a = p.parse_args(argv)
    try:
        rows = prepare_refcoco(a.root, a.force)
    except OSError as e:
        raise SamAdaptError(f"could not write the JSON beside the pickle: {e}. Check the folder's permissions.") from e
    for path, n, status in rows:
        print(f"{status:10s} {path}" + (f" ({n} refs)" if n >= 0 else ""))
