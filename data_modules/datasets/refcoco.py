"""RefCOCO-family referring segmentation dataset in the refer toolkit's on-disk layout."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_modules.datasets.safe_pickle import load_refs, resolve_refs_path
from data_modules.pipeline.binary import BinarySegDataset, SampleOptions, Target
from data_modules.pipeline.images import check_same_size, read_rgb
from samadapt.errors import MissingFileError, SamAdaptError

log = logging.getLogger(__name__)

HOW_TO_GET_COCO = (
    "For real RefCOCO data download refcoco.zip from the refer project and the COCO train2014 images, "
    "unzip into data/refcoco (refs and instances.json in data/refcoco/<dataset>/, images in "
    "data/refcoco/images/train2014); for a synthetic stand-in run `samadapt synth`. See README."
)


def refcoco_paths(root: str | Path, dataset: str, split_by: str, image_dir: str | Path | None) -> dict[str, Path]:
    """Where the refs file, instances.json and the image folder live for this layout."""
    root = Path(root)
    return {
        "refs": root / dataset / f"refs({split_by}).p",
        "instances": root / dataset / "instances.json",
        "images": Path(image_dir) if image_dir else root / "images" / "train2014",
    }


def check_refcoco_paths(paths: dict[str, Path]) -> None:
    """Raise MissingFileError for the first missing piece of the layout."""
    resolve_refs_path(paths["refs"])
    if not paths["instances"].is_file():
        raise MissingFileError(paths["instances"], "COCO instances.json", HOW_TO_GET_COCO)
    if not paths["images"].is_dir():
        raise MissingFileError(paths["images"], "image folder", HOW_TO_GET_COCO)


@lru_cache(maxsize=2)
def _load_coco_cached(path: str, mtime: float) -> Any:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        return COCO(path)


@lru_cache(maxsize=2)
def _load_refs_cached(path: str, mtime: float) -> list[dict]:
    return load_refs(path)


def cached_refs(refs_path: Path) -> list[dict]:
    """The refs of `refs(xxx).p` (or its .json), read once per process and shared between splits."""
    resolved = resolve_refs_path(refs_path)
    return _load_refs_cached(str(resolved), resolved.stat().st_mtime)


def load_coco(path: Path) -> Any:
    """pycocotools COCO for instances.json, shared between the splits of one run."""
    try:
        return _load_coco_cached(str(path), path.stat().st_mtime)
    except (ValueError, KeyError) as e:
        raise SamAdaptError(f"could not read COCO annotations {path}: {e}.") from e


def ann_to_mask(coco: Any, ann: dict) -> np.ndarray:
    """coco.annToMask without pycocotools' numpy-2 DeprecationWarning (one per call otherwise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return coco.annToMask(ann)


def _usable(ann: dict | None) -> bool:
    """Cheap check that an annotation has a non-empty mask (avoids decoding every mask at start-up)."""
    if ann is None or not ann.get("segmentation") or float(ann.get("area", 1.0)) <= 0:
        return False
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return any(len(poly) >= 6 for poly in seg)
    return True


class RefCocoDataset(BinarySegDataset):
    """Referring segmentation samples, read like every other dataset (pipeline/binary.py).

    Training: one sample per referent, one of its sentences drawn on every read.
    Evaluation: one sample per (referent, sentence), sample id "<ref_id>_<sent_id>".
    """

    jitter_prob = 1.0  # colour jitter, when enabled, on every training read (opt-in: it can break colour words)

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split_by: str = "unc",
        split: str = "train",
        image_dir: str | Path | None = None,
        options: SampleOptions | None = None,
        train: bool = False,
    ):
        super().__init__(options or SampleOptions(), train)
        self.paths = refcoco_paths(root, dataset, split_by, image_dir)
        check_refcoco_paths(self.paths)
        self.split = split
        all_refs = cached_refs(self.paths["refs"])
        present = sorted({str(r.get("split")) for r in all_refs})
        if split not in present:
            raise SamAdaptError(
                f"unknown split '{split}' for {resolve_refs_path(self.paths['refs'])}: the file has splits "
                f"{', '.join(present)}."
            )
        self.coco = load_coco(self.paths["instances"])
        self.refs = [r for r in all_refs if r.get("split") == split
                     and _usable(self.coco.anns.get(r["ann_id"])) and r.get("sentences")]
        self.skipped = sum(r.get("split") == split for r in all_refs) - len(self.refs)  # for `samadapt inspect-data`
        if self.skipped:
            log.warning("%s split %s: skipped %d referents with an empty or missing mask or no sentence.",
                        resolve_refs_path(self.paths["refs"]), split, self.skipped)
        for ref in self.refs:
            image = str(self.paths["images"] / self.coco.imgs[ref["image_id"]]["file_name"])
            sentences = tuple((int(s["sent_id"]), str(s["sent"])) for s in ref["sentences"])
            if train:  # the sentence is drawn on every read (`draw`)
                self.targets.append(Target(str(ref["ref_id"]), image, "", -1, (ref["ann_id"], sentences)))
                continue
            for sent_id, text in sentences:
                self.targets.append(Target(f"{ref['ref_id']}_{sent_id}", image, text, -1, (ref["ann_id"],)))

    def texts(self) -> list[str]:
        """Every sentence a sample can carry (one per sample in evaluation), without decoding images."""
        if self.train:
            return [text for t in self.targets for _, text in t.source[1]]
        return super().texts()

    def draw(self, target: Target, generator: torch.Generator) -> Target:
        if not self.train:
            return target
        ann_id, sentences = target.source
        sent_id, text = sentences[int(torch.randint(0, len(sentences), (), generator=generator))]
        return replace(target, sample_id=f"{target.sample_id}_{sent_id}", text=text)

    def load_image(self, target: Target) -> np.ndarray:
        return read_rgb(target.image, self.report, HOW_TO_GET_COCO)

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        ann_id = target.source[0]
        mask = ann_to_mask(self.coco, self.coco.anns[ann_id]).astype(bool)
        check_same_size(image_hw, mask, Path(target.image), Path(f"{self.paths['instances']} annotation {ann_id}"))
        return mask, None

    def mask_files(self, target: Target) -> list[Path] | None:
        return [self.paths["instances"]]
