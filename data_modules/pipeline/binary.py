"""One binary target per sample: the reading / augmentation / prompt path of every dataset.

A dataset lists its targets (image, which object or class, text) once at start-up and says how to read an image
and a mask; decoding, letterboxing, the pixel cache, prompts and seeding are the same for all of them.
Training: random flip (swapping left/right in the text), photometric augmentation, optionally a random content
size (scale augmentation), jittered box and fresh points on every read. Evaluation: no augmentation, prompts seeded
by the sample id, so a sample gets the same prompts in every run, in any order and in any subset.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data_modules.pipeline.augment import JitterStyle, PhotometricAugment
from data_modules.pipeline.images import LoadReport, check_same_size, read_binary_mask, read_rgb
from data_modules.pipeline.pixel_cache import PixelCache, PixelSource, letterboxed_pixels
from data_modules.pipeline.prompts import PointStrategy, letterboxed_prompts
from data_modules.pipeline.sample import Sample
from data_modules.pipeline.transforms import image_key, original_target, swap_left_right
from samadapt.sam.preprocess import Letterbox


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
    train_num_points: tuple[int, ...] | None = None  # training: each sample's point count drawn from these
    num_bg_points: int = 0
    point_strategy: PointStrategy = "uniform"
    box_jitter: float = 0.0
    hflip: bool = False
    color_jitter: bool = False
    color_jitter_strength: float = 0.2  # factors in [1 - s, 1 + s] for brightness, contrast and saturation
    color_jitter_p: float | None = None  # None: the dataset's `jitter_prob`
    color_jitter_style: JitterStyle = "albumentations"
    blur: bool = False
    random_long_side: tuple[int, ...] | None = None  # training: the content's long side drawn from these
    letterbox: Letterbox = "top_left"
    seed: int = 0
    pixel_cache_dir: str | None = None  # letterboxed pixels stored on disk, read back in later epochs and runs
    pixel_cache_mb: float = 20000


def apply_template(template: str, name: str) -> str:
    """`"a photo of a {}"` + "cat" -> "a photo of a cat"."""
    return template.format(name) if name else ""


def check_template(template: str) -> str:
    from samadapt.errors import SamAdaptError

    if template.count("{}") != 1:
        raise SamAdaptError(f"text_template {template!r} must contain '{{}}' exactly once, e.g. 'a photo of a {{}}'.")
    return template


class BinarySegDataset(Dataset):
    """Subclasses fill `self.targets` and implement `load_image(target)` (HxWx3 uint8) and
    `load_mask(target, image_hw)` (HxW bool mask, HxW bool ignore or None); `mask_files(target)` names the files
    the mask comes from, so the pixel cache can tell when one changed (None: masks are not cached)."""

    hflip_prob: float = 0.5
    jitter_prob: float = 0.8  # of colour jitter on a training read, when enabled
    flip_classes: dict[int, int] = {}  # class ids that a horizontal flip exchanges (left eye <-> right eye)

    def __init__(self, options: SampleOptions, train: bool):
        self.options, self.train = options, train
        self.targets: list[Target] = []
        self.report = LoadReport()
        self.augment: PhotometricAugment | None = None
        if train and (options.color_jitter or options.blur):
            strength = options.color_jitter_strength
            p = self.jitter_prob if options.color_jitter_p is None else options.color_jitter_p
            self.augment = PhotometricAugment(color_jitter=options.color_jitter, blur=options.blur,
                                              brightness=strength, contrast=strength, saturation=strength,
                                              jitter_p=p, jitter_style=options.color_jitter_style)
        self.pixel_cache: PixelCache | None = None
        if options.pixel_cache_dir:
            self.pixel_cache = PixelCache(options.pixel_cache_dir, options.image_size, options.pixel_cache_mb,
                                          options.letterbox)

    def __len__(self) -> int:
        return len(self.targets)

    def load_image(self, target: Target) -> np.ndarray:
        raise NotImplementedError

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def mask_files(self, target: Target) -> list[Path] | None:
        return None

    def mask_settings(self) -> str:
        """Dataset options that change a target's mask beyond its files (part of the mask's cache key)."""
        return ""

    def pixel_source(self, target: Target) -> PixelSource:
        files = self.mask_files(target)
        return PixelSource(Path(target.image), partial(self.load_image, target),
                           f"{type(self).__name__}|{self.mask_settings()}|{target!r}",
                           None if files is None else [*files], partial(self.load_mask, target))

    def draw(self, target: Target, generator: torch.Generator) -> Target:
        """The target as this read sees it: as listed (RefCOCO's training draws one of the referent's sentences)."""
        return target

    def texts(self) -> list[str]:
        """The text of every sample, without decoding anything (for vocabulary statistics)."""
        return [t.text for t in self.targets]

    def _generator(self, target: Target) -> torch.Generator:
        if self.train:  # fresh randomness per read; the global torch RNG differs per dataloader worker
            return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        return torch.Generator().manual_seed(zlib.crc32(target.sample_id.encode()) + self.options.seed)

    def __getitem__(self, idx: int) -> Sample:
        listed = self.targets[idx]
        opt = self.options
        gen = self._generator(listed)
        target = self.draw(listed, gen)
        text, class_id = target.text, target.class_id
        flipped = self.train and opt.hflip and float(torch.rand((), generator=gen)) < self.hflip_prob
        if flipped:
            text = swap_left_right(text)
            class_id = self.flip_classes.get(class_id, class_id)
        long_side = None  # scale augmentation (DIT's AUG_SCALE): training only, evaluation never rescales
        if self.train and opt.random_long_side:
            long_side = opt.random_long_side[int(torch.randint(len(opt.random_long_side), (), generator=gen))]
        px = letterboxed_pixels(self.pixel_source(listed), opt.image_size, self.pixel_cache, flipped, self.augment,
                                need_original=not self.train, long_side=long_side, letterbox=opt.letterbox)
        if not px.prompt_mask.any():
            self.report.add("empty target mask: kept, its points are marked absent (label -1)", target.image)
        valid = None  # where background points may fall: the content area minus ignore pixels
        if opt.num_bg_points > 0:
            top, left, nh, nw = px.content_box
            valid = torch.zeros(opt.image_size, opt.image_size, dtype=torch.bool)
            valid[top:top + nh, left:left + nw] = True
            if px.ignore is not None:
                valid &= ~px.ignore[0]
        jitter = opt.box_jitter if self.train else 0.0
        num_points = opt.num_points
        if self.train and opt.train_num_points:
            num_points = opt.train_num_points[int(torch.randint(len(opt.train_num_points), (), generator=gen))]
        points, labels, box = letterboxed_prompts(px.mask_bool, px.prompt_mask, px.scale, px.content_box,
                                                  num_points, jitter, gen, opt.num_bg_points, opt.point_strategy,
                                                  valid)
        sample = Sample(
            image=px.image,
            mask=px.mask,
            points=points,
            point_labels=labels,
            box=box,
            text=text,
            sample_id=target.sample_id,
            orig_size=torch.tensor(px.orig_hw, dtype=torch.long),
            content_hw=torch.tensor(px.content_hw, dtype=torch.long),
            content_offset=torch.tensor(px.content_offset, dtype=torch.long),
            class_id=class_id,
            image_key=image_key(str(target.image), opt.image_size, flipped, self.augment is not None, long_side,
                                opt.letterbox),
        )
        if px.ignore is not None:  # only datasets with ignore pixels carry the map (collate fills in blanks)
            sample["ignore"] = px.ignore
        if not self.train:  # metrics at the original resolution compare against this
            sample["orig_mask"] = original_target(px.orig_mask, px.orig_ignore)
        return sample


class MaskFileDataset(BinarySegDataset):
    """Targets whose mask is one binary image file, `target.source[0]` (COD10K, plain folders)."""

    def load_image(self, target: Target) -> np.ndarray:
        return read_rgb(target.image, self.report)

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        mask_path = Path(target.source[0])
        mask = read_binary_mask(mask_path, self.report)
        check_same_size(image_hw, mask, Path(target.image), mask_path)
        return mask, None

    def mask_files(self, target: Target) -> list[Path] | None:
        return [Path(target.source[0])]
