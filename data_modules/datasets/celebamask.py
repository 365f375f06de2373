"""CelebAMask-HQ facial parts: one binary sample per (image, part present), text = the part's name.

Layout (data root): CelebA-HQ-img/{k}.jpg (1024x1024), CelebAMask-HQ-mask-anno/{k//2000}/{k:05d}_{part}.png
(512x512), CelebA-HQ-to-CelebA-mapping.txt (shipped with CelebAMask-HQ) and CelebA's list_eval_partition.txt
(0 train, 1 val, 2 test), which together give the official partition.
Overlaps are resolved in the official merge order (CELEBAMASK_PARTS, later parts painted on top), so each
pixel belongs to one part, as in the official label maps. Images are decoded at the masks' 512x512.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from data_modules.datasets.class_names import CELEBAMASK_PART_TEXT, CELEBAMASK_PARTS
from data_modules.pipeline.binary import BinarySegDataset, SampleOptions, Target, apply_template
from data_modules.pipeline.images import read_label, read_rgb
from samadapt.errors import MissingFileError, SamAdaptError

HOW_TO_GET_CELEBAMASK = (
    "Download CelebAMask-HQ (github.com/switchablenorms/CelebAMask-HQ) and unzip it as the data root; "
    "put CelebA's list_eval_partition.txt (CelebA 'Eval' folder) beside CelebA-HQ-to-CelebA-mapping.txt. See README."
)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _read_table(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise MissingFileError(path, "CelebAMask-HQ partition file", HOW_TO_GET_CELEBAMASK)
    return [(no, line.split()) for no, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]


@lru_cache(maxsize=2)
def celebamask_partition(root: str) -> dict[int, int]:
    """CelebA-HQ index k -> 0 train / 1 val / 2 test, via the HQ-to-CelebA mapping and CelebA's partition."""
    base = Path(root)
    mapping_path, partition_path = base / "CelebA-HQ-to-CelebA-mapping.txt", base / "list_eval_partition.txt"
    partition: dict[str, int] = {}
    for no, fields in _read_table(partition_path):
        if len(fields) != 2 or not fields[1].isdigit():
            raise SamAdaptError(f"line {no} of {partition_path} is {' '.join(fields)!r}; expected '000001.jpg 0'.")
        partition[fields[0]] = int(fields[1])
    out: dict[int, int] = {}
    for no, fields in _read_table(mapping_path):
        if fields[0] == "idx":  # header "idx orig_idx orig_file"
            continue
        if len(fields) != 3 or not fields[0].isdigit():
            raise SamAdaptError(f"line {no} of {mapping_path} is {' '.join(fields)!r}; expected 'idx orig_idx "
                                f"orig_file'. Re-download CelebAMask-HQ.")
        if fields[2] not in partition:
            raise SamAdaptError(f"{fields[2]} (line {no} of {mapping_path}) is not in {partition_path}; use the "
                                f"list_eval_partition.txt of the original CelebA release.")
        out[int(fields[0])] = partition[fields[2]]
    return out


def _part_files(mask_dir: Path) -> dict[int, dict[str, Path]]:
    """Image index -> {part: file} for every part PNG present (one directory listing per folder)."""
    found: dict[int, dict[str, Path]] = {}
    for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir()):
        for f in folder.iterdir():
            stem, _, part = f.stem.partition("_")
            if f.suffix == ".png" and stem.isdigit() and part in CELEBAMASK_PARTS:
                found.setdefault(int(stem), {})[part] = f
    return found


class CelebAMaskDataset(BinarySegDataset):
    """Per-part binary samples of one official split; `parts` limits the parts used (default all 18)."""

    mask_size = 512
    flip_classes = {
        CELEBAMASK_PARTS.index(a) + 1: CELEBAMASK_PARTS.index(b) + 1
        for x, y in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")) for a, b in ((x, y), (y, x))
    }

    def __init__(
        self,
        root: Path,
        split: Literal["train", "val", "test"],
        options: SampleOptions,
        train: bool,
        text_template: str = "{}",
        parts: tuple[str, ...] | None = None,
    ):
        super().__init__(options, train)
        image_dir, mask_dir = root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask-anno"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise MissingFileError(folder, "CelebAMask-HQ folder", HOW_TO_GET_CELEBAMASK)
        if split not in SPLIT_CODES:
            raise SamAdaptError(f"unknown CelebAMask-HQ split {split!r}; choose train, val or test.")
        unknown = set(parts or ()) - set(CELEBAMASK_PARTS)
        if unknown:
            raise SamAdaptError(f"unknown CelebAMask-HQ part(s) {sorted(unknown)}; choose from {CELEBAMASK_PARTS}.")
        wanted = [p for p in CELEBAMASK_PARTS if parts is None or p in parts]
        partition = celebamask_partition(str(root))
        self.part_files = _part_files(mask_dir)
        code = SPLIT_CODES[split]
        for k in sorted(i for i, c in partition.items() if c == code):
            files = self.part_files.get(k, {})
            if not files:
                self.report.add("image without any part mask left out", image_dir / f"{k}.jpg")
                continue
            for part in wanted:
                if part in files:
                    text = apply_template(text_template, CELEBAMASK_PART_TEXT[part])
                    self.targets.append(Target(f"{k}_{part}", str(image_dir / f"{k}.jpg"), text,
                                               CELEBAMASK_PARTS.index(part) + 1, (k, part)))

    def load_image(self, target: Target) -> np.ndarray:
        image = read_rgb(target.image, self.report, reduce_to=self.mask_size)
        if image.shape[:2] != (self.mask_size, self.mask_size):
            image = np.asarray(Image.fromarray(image).resize((self.mask_size, self.mask_size), Image.BILINEAR))
        return image

    def mask_files(self, target: Target) -> list[Path] | None:
        files = self.part_files[target.source[0]]  # later parts cut into this one: all of them matter
        return [files[p] for p in CELEBAMASK_PARTS if p in files]

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        k, part = target.source
        files = self.part_files[k]
        mask = self._part(files[part])
        # official merge order: parts painted after this one take its pixels
        for later in CELEBAMASK_PARTS[CELEBAMASK_PARTS.index(part) + 1:]:
            if later in files:
                mask &= ~self._part(files[later])
        return mask, None

    def _part(self, path: Path) -> np.ndarray:
        label = read_label(path, self.report)
        if label.shape != (self.mask_size, self.mask_size):
            raise SamAdaptError(f"part mask {path} is {label.shape[1]}x{label.shape[0]}, CelebAMask-HQ masks are "
                                f"512x512. Re-download the file.")
        return label != 0
