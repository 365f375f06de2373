"""One binary target per sample: the shared reading / augmentation / prompt path of the class-based datasets.

A dataset lists its targets (image, which object or class, text) once at start-up; `load` decodes one.
Training: random flip (swapping left/right in the text), photometric augmentation, jittered box and fresh
points on every read. Evaluation: no augmentation, prompts seeded by the sample id, so a sample gets the
same prompts in every run, in any order and in any subset.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import PhotometricAugment
from .images import LoadReport, binary_from_label, check_same_size, read_label, read_rgb
from .prompts import PointStrategy, letterboxed_prompts
from .transforms import image_key, letterbox, letterbox_mask, original_target, swap_left_right


@dataclass(frozen=True)
class Target:
    """One sample before decoding; `source` says where its mask comes from (dataset-specific)."""

    sample_id: str
    image: str
    text: str
    class_id: int = -1
    source: tuple = ()


@dataclass
class SampleOptions:
    """How samples are turned into model inputs (shared by every class-based DataModule)."""

    image_size: int = 1024
    num_points: int = 1
    num_bg_points: int = 0
    point_strategy: PointStrategy = "uniform"
    box_jitter: float = 0.0
    hflip: bool = False
    color_jitter: bool = False
    blur: bool = False
    seed: int = 0


def apply_template(template: str, name: str) -> str:
    """`"a photo of a {}"` + "cat" -> "a photo of a cat"."""
    return template.format(name) if name else ""


def check_template(template: str) -> str:
    from samadapt.errors import SamAdaptError

    if template.count("{}") != 1:
        raise SamAdaptError(f"text_template {template!r} must contain '{{}}' exactly once, e.g. 'a photo of a {{}}'.")
    return template


class BinarySegDataset(Dataset):
    """Subclasses fill `self.targets` and implement `load(target) -> (image HxWx3 uint8, mask HxW bool, ignore)`."""

    hflip_prob: float = 0.5
    flip_classes: dict[int, int] = {}  # class ids that a horizontal flip exchanges (left eye <-> right eye)

    def __init__(self, options: SampleOptions, train: bool):
        self.options, self.train = options, train
        self.targets: list[Target] = []
        self.report = LoadReport()
        self._augment: PhotometricAugment | None = None
        if train and (options.color_jitter or options.blur):
            self._augment = PhotometricAugment(color_jitter=options.color_jitter, blur=options.blur)

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, target: Target) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def texts(self) -> list[str]:
        """The text of every sample, without decoding anything (for vocabulary statistics)."""
        return [t.text for t in self.targets]

    def _generator(self, target: Target) -> torch.Generator:
        if self.train:  # fresh randomness per read; the global torch RNG differs per dataloader worker
            return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        return torch.Generator().manual_seed(zlib.crc32(target.sample_id.encode()) + self.options.seed)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        target = self.targets[idx]
        opt = self.options
        gen = self._generator(target)
        image, mask, ignore = self.load(target)
        if not mask.any():
            self.report.add("empty target mask: kept, its points are marked absent (label -1)", target.image)
        text, class_id = target.text, target.class_id
        orig_hw = image.shape[:2]
        flipped = self.train and opt.hflip and float(torch.rand((), generator=gen)) < self.hflip_prob
        if flipped:
            image, mask = image[:, ::-1], mask[:, ::-1]
            ignore = None if ignore is None else ignore[:, ::-1]
            text = swap_left_right(text)
            class_id = self.flip_classes.get(class_id, class_id)
        if self._augment is not None:
            image = self._augment(np.ascontiguousarray(image))
        lb = letterbox(image, mask, opt.image_size)
        ignore_lb = letterbox_mask(ignore, opt.image_size) if ignore is not None else None
        valid = torch.zeros(opt.image_size, opt.image_size, dtype=torch.bool)
        valid[: lb.content_hw[0], : lb.content_hw[1]] = True
        if ignore_lb is not None:
            valid &= ~ignore_lb[0]
        jitter = opt.box_jitter if self.train else 0.0
        points, labels, box = letterboxed_prompts(lb.mask[0], mask, lb.scale, lb.content_hw, opt.num_points, jitter,
                                                  gen, opt.num_bg_points, opt.point_strategy, valid)
        sample = {
            "image": lb.image,
            "mask": lb.mask,
            "points": points,
            "point_labels": labels,
            "box": box,
            "text": text,
            "sample_id": target.sample_id,
            "orig_size": torch.tensor(orig_hw, dtype=torch.long),
            "class_id": class_id,
            "image_key": image_key(str(target.image), opt.image_size, flipped, self._augment is not None),
        }
        sample["ignore"] = ignore_lb if ignore_lb is not None else torch.zeros(1, opt.image_size, opt.image_size,
                                                                               dtype=torch.bool)
        if not self.train:  # metrics at the original resolution compare against this
            sample["orig_mask"] = original_target(mask, ignore)
        return sample


class MaskFileDataset(BinarySegDataset):
    """Targets whose mask is one binary image file, `target.source[0]` (COD10K, plain folders)."""

    def load(self, target: Target) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        mask_path = Path(target.source[0])
        image = read_rgb(target.image, self.report)
        mask = binary_from_label(read_label(mask_path, self.report), mask_path, self.report)
        check_same_size(image, mask, Path(target.image), mask_path)
        return image, mask, None
