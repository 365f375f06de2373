"""UniMatch / UniMatch-V2 split files: one "image_path mask_path" line per image, relative to the data root.

Layout (as in the UniMatch repositories): `<split_dir>/<split>/labeled.txt` (e.g. splits/coco/1_512) and
`<split_dir>/val.txt` (a `val.txt` inside the split folder wins if present). Paths are checked when read:
a missing image or mask stops with the file, the line and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samadapt.errors import MissingFileError, SamAdaptError


@dataclass(frozen=True)
class SplitLine:
    image: Path
    mask: Path
    where: str  # " (line 3 of splits/coco/1_512/labeled.txt)", appended to error messages


def split_file(split_dir: Path, split: str, name: str, how_to_get: str) -> Path:
    """`labeled.txt` / `val.txt` for this split; val.txt falls back to the dataset-level one."""
    candidates = [split_dir / split / f"{name}.txt"]
    if name == "val":
        candidates.append(split_dir / "val.txt")
    for path in candidates:
        if path.is_file():
            return path
    raise MissingFileError(candidates[0], f"UniMatch split file {name}.txt", how_to_get)


def read_split(path: Path, root: Path, how_to_get: str) -> list[SplitLine]:
    """Parse and check every line (blank lines are allowed; anything else must name an existing pair)."""
    out: list[SplitLine] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        where = f" (line {no} of {path})"
        if len(parts) != 2:
            raise SamAdaptError(f"line {no} of {path} is {line!r}; expected 'image_path mask_path'. Fix the line.")
        image, mask = root / parts[0], root / parts[1]
        for p, what in ((image, "image"), (mask, "mask")):
            if not p.is_file():
                raise MissingFileError(
                    p, f"{what} named on line {no} of {path}",
                    f"Check that data root {root} holds the dataset ({how_to_get}) or remove the line.",
                )
        out.append(SplitLine(image, mask, where))
    if not out:
        raise SamAdaptError(f"split file {path} lists no images. Re-download the split files.")
    return out
