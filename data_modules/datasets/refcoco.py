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

from data_modules.datasets.coco_annotations import annotation_mask, empty_reason, instances_hw
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


def _sentences(ref: dict, refs_file: Path) -> tuple[tuple[int, str], ...]:
    """(sent_id, text) of every sentence of a referent; a malformed entry stops with the file and ref id."""
    where = f"{refs_file}: ref {ref.get('ref_id')!r}"
    sentences = ref.get("sentences")
    if not isinstance(sentences, list):
        raise SamAdaptError(f"{where} has no 'sentences' list (refer format: sentences=[{{sent, sent_id, ...}}]). "
                            "Fix or regenerate the refs file.")
    out = []
    for i, sentence in enumerate(sentences):
        text = sentence.get("sent") if isinstance(sentence, dict) else None
        sent_id = sentence.get("sent_id") if isinstance(sentence, dict) else None
        if not isinstance(text, str) or not isinstance(sent_id, int) or isinstance(sent_id, bool):
            raise SamAdaptError(f"{where}: sentence {i} has no text 'sent' or no integer 'sent_id' (it holds "
                                f"{sorted(sentence) if isinstance(sentence, dict) else repr(sentence)[:60]}). "
                                "Fix or regenerate the refs file.")
        out.append((sent_id, text))
    return tuple(out)


def _check_ref(ref: dict, refs_file: Path) -> None:
    missing = [k for k in ("ref_id", "ann_id", "image_id") if k not in ref]
    if missing:
        raise SamAdaptError(f"{refs_file}: ref {ref.get('ref_id', '?')!r} has no {', '.join(missing)} (refer "
                            "format: ref_id, ann_id, image_id, split, sentences). Fix or regenerate the refs file.")


NO_SENTENCE = "no sentence"
MISSING_ANNOTATION = "annotation missing from instances.json"


def _skip_message(refs_file: Path, split: str, total: int, skipped: dict[str, list]) -> str:
    parts = [f"{len(ids)} with {reason} ({'ref' if reason == NO_SENTENCE else 'ann'} ids "
             f"{', '.join(map(str, ids[:5]))}{', ...' if len(ids) > 5 else ''})" for reason, ids in skipped.items()]
    n = sum(len(ids) for ids in skipped.values())
    return (f"{refs_file} split {split}: skipped {n} of {total} referents: {'; '.join(parts)}. The refer toolkit "
            "keeps such referents, but their target is empty (nothing to train on, no IoU to score): see "
            "docs/datasets.md.")


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
        refs_file = resolve_refs_path(self.paths["refs"])
        in_split = [r for r in all_refs if r.get("split") == split]
        skipped: dict[str, list] = {}
        self.refs = []
        for ref in in_split:
            _check_ref(ref, refs_file)
            sentences = _sentences(ref, refs_file)
            reason, skip_id = self._empty_target(ref), ref["ann_id"]
            if reason is None and not sentences:
                reason, skip_id = NO_SENTENCE, ref["ref_id"]
            if reason is not None:
                skipped.setdefault(reason, []).append(skip_id)
                continue
            self.refs.append(ref)
            image = str(self.paths["images"] / self.coco.imgs[ref["image_id"]]["file_name"])
            if train:  # the sentence is drawn on every read (`draw`)
                self.targets.append(Target(str(ref["ref_id"]), image, "", -1, (ref["ann_id"], sentences)))
                continue
            for sent_id, text in sentences:
                self.targets.append(Target(f"{ref['ref_id']}_{sent_id}", image, text, -1, (ref["ann_id"],)))
        self.skipped = sum(len(ids) for ids in skipped.values())
        if skipped:  # one warning per dataset; `samadapt inspect-data` lists the counts
            log.warning(_skip_message(refs_file, split, len(in_split), skipped))
            for reason, ids in skipped.items():
                self.report.add(f"referent skipped: {reason}", f"{'ref' if reason == NO_SENTENCE else 'ann'} {ids[0]}",
                                len(ids), announce=False)

    def _empty_target(self, ref: dict) -> str | None:
        """Why this referent's mask is empty, or None."""
        ann = self.coco.anns.get(ref["ann_id"])
        where = f"{self.paths['instances']} annotation {ref['ann_id']!r} (ref {ref['ref_id']!r})"
        h, w = instances_hw(self.coco, ref["image_id"], where)
        return MISSING_ANNOTATION if ann is None else empty_reason(ann, h, w, where)

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
        where = f"{self.paths['instances']} annotation {ann_id!r}"
        ann = self.coco.anns[ann_id]
        mask = annotation_mask(ann, *instances_hw(self.coco, ann.get("image_id"), where), where)
        check_same_size(image_hw, mask, Path(target.image), Path(f"{self.paths['instances']} annotation {ann_id}"))
        return mask, None

    def mask_files(self, target: Target) -> list[Path] | None:
        return [self.paths["instances"]]
