"""RefCOCO-family referring segmentation dataset in the refer toolkit's on-disk layout."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data_modules.datasets.safe_pickle import load_refs, resolve_refs_path
from data_modules.pipeline.pixel_cache import PixelCache, letterboxed_pixels
from data_modules.pipeline.prompts import letterboxed_prompts
from data_modules.pipeline.transforms import ColorJitter, image_key, original_target, swap_left_right
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


class RefCocoDataset(Dataset):
    """Referring segmentation samples following the shared sample-dict contract.

    Training: one sample per referent, a random sentence and random prompts on every read.
    Evaluation: one sample per (referent, sentence), prompts seeded by `seed + index`.
    """

    hflip_prob: float = 0.5

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split_by: str = "unc",
        split: str = "train",
        image_dir: str | Path | None = None,
        image_size: int = 1024,
        train: bool = False,
        num_points: int = 1,
        box_jitter: float = 0.0,
        hflip: bool = False,
        seed: int = 0,
        color_jitter: bool = False,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
    ):
        self.paths = refcoco_paths(root, dataset, split_by, image_dir)
        check_refcoco_paths(self.paths)
        self.split, self.image_size, self.train = split, image_size, train
        self.num_points, self.box_jitter, self.hflip, self.seed = num_points, box_jitter, hflip, seed
        self.color_jitter = ColorJitter() if (train and color_jitter) else None
        self.pixel_cache = PixelCache(pixel_cache_dir, image_size, pixel_cache_mb) if pixel_cache_dir else None

        refs_path = resolve_refs_path(self.paths["refs"])
        all_refs = _load_refs_cached(str(refs_path), refs_path.stat().st_mtime)
        present = sorted({str(r.get("split")) for r in all_refs})
        if split not in present:
            raise SamAdaptError(
                f"unknown split '{split}' for {refs_path}: the file has splits {', '.join(present)}."
            )
        self.coco = load_coco(self.paths["instances"])
        self.refs: list[dict] = []
        skipped = 0
        self.skipped = 0  # counted for `samadapt inspect-data`
        for ref in all_refs:
            if ref.get("split") != split:
                continue
            if _usable(self.coco.anns.get(ref["ann_id"])) and ref.get("sentences"):
                self.refs.append(ref)
            else:
                skipped += 1
        self.skipped = skipped
        if skipped:
            log.warning("%s split %s: skipped %d referents with an empty or missing mask or no sentence.",
                        refs_path, split, skipped)
        # evaluation index: (ref position, sentence position)
        self.index = [(i, j) for i, ref in enumerate(self.refs) for j in range(len(ref["sentences"]))]

    def __len__(self) -> int:
        return len(self.refs) if self.train else len(self.index)

    def texts(self) -> list[str]:
        """Every sentence a sample can carry (one per sample in evaluation), without decoding images."""
        if self.train:
            return [str(sent["sent"]) for ref in self.refs for sent in ref["sentences"]]
        return [str(self.refs[i]["sentences"][j]["sent"]) for i, j in self.index]

    def _load_image(self, image_id: int) -> np.ndarray:
        info = self.coco.imgs[image_id]
        path = self.paths["images"] / info["file_name"]
        if not path.is_file():
            raise MissingFileError(path, "image", HOW_TO_GET_COCO)
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError) as err:  # truncated, corrupt, or not an image at all
            raise SamAdaptError(f"cannot read image {path}: {err}. Re-download or replace the file.") from None

    def _load_mask(self, ref: dict, image_hw: tuple[int, int]) -> np.ndarray:
        mask = ann_to_mask(self.coco, self.coco.anns[ref["ann_id"]])
        if mask.shape != tuple(image_hw):
            raise SamAdaptError(
                f"image {self.coco.imgs[ref['image_id']]['file_name']} is {tuple(image_hw)} but instances.json "
                f"says {mask.shape}; the images and annotations do not belong together."
            )
        return mask

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if self.train:
            # fresh randomness per read; the global torch RNG differs per dataloader worker
            gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
            ref = self.refs[idx]
            sent = ref["sentences"][int(torch.randint(0, len(ref["sentences"]), (), generator=gen))]
        else:
            gen = torch.Generator().manual_seed(self.seed + idx)
            ref_pos, sent_pos = self.index[idx]
            ref = self.refs[ref_pos]
            sent = ref["sentences"][sent_pos]
        text = str(sent["sent"])
        info = self.coco.imgs[ref["image_id"]]
        flipped = self.train and self.hflip and float(torch.rand((), generator=gen)) < self.hflip_prob
        if flipped:
            text = swap_left_right(text)
        px = letterboxed_pixels(
            self.pixel_cache, self.image_size, flipped, self.paths["images"] / info["file_name"],
            lambda: self._load_image(ref["image_id"]), f"ann{ref['ann_id']}", [self.paths["instances"]],
            lambda hw: (self._load_mask(ref, hw), None), self.color_jitter, need_original=not self.train)
        jitter = self.box_jitter if self.train else 0.0
        points, labels, box = letterboxed_prompts(px.mask_bool, px.prompt_mask, px.scale, px.content_hw,
                                                  self.num_points, jitter, gen)
        sample = {
            "image": px.image,
            "mask": px.mask,
            "points": points,
            "point_labels": labels,
            "box": box,
            "text": text,
            "sample_id": f"{ref['ref_id']}_{sent['sent_id']}",
            "orig_size": torch.tensor(px.orig_hw, dtype=torch.long),
            "image_key": image_key(info["file_name"], self.image_size, flipped, self.color_jitter is not None),
        }
        if not self.train:  # metrics at the original resolution compare against this
            sample["orig_mask"] = original_target(px.orig_mask)
        return sample
