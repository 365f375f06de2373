"""Shared plumbing of the class-based DataModules (COCO, ADE20K, COD10K, CelebAMask-HQ, folder)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from data_modules.base import PromptedSegDataModule, take_first
from data_modules.pipeline.binary import SampleOptions, check_template
from data_modules.pipeline.prompts import PointStrategy
from samadapt.errors import MissingFileError


class ClassSegDataModule(PromptedSegDataModule):
    """Subclasses set `how_to_get`, implement `build(split, train)` and may override `check_paths()`."""

    how_to_get: str = "See README, Datasets."

    def __init__(
        self,
        root: str,
        train_split: str,
        val_split: str,
        test_splits: list[str] | None,
        image_size: int,
        num_points: int,
        num_bg_points: int,
        point_strategy: PointStrategy,
        box_jitter: float,
        hflip: bool,
        color_jitter: bool,
        blur: bool,
        text_template: str,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        seed: int,
        max_train_samples: int | None,
        max_eval_samples: int | None,
        *,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
    ):
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.root = Path(root)
        self.train_split, self.val_split = train_split, val_split
        self.test_split_names = list(test_splits) if test_splits is not None else [val_split]
        self.text_template = check_template(text_template)
        common = dict(image_size=image_size, num_points=num_points, num_bg_points=num_bg_points,
                      point_strategy=point_strategy, seed=seed, pixel_cache_dir=pixel_cache_dir,
                      pixel_cache_mb=pixel_cache_mb)
        self.train_options = SampleOptions(**common, box_jitter=box_jitter, hflip=hflip, color_jitter=color_jitter,
                                           blur=blur)
        self.eval_options = SampleOptions(**common)
        self.max_train_samples, self.max_eval_samples = max_train_samples, max_eval_samples

    def options(self, train: bool) -> SampleOptions:
        return self.train_options if train else self.eval_options

    def check_paths(self) -> None:
        if not self.root.is_dir():
            raise MissingFileError(self.root, f"{type(self).__name__} data root", self.how_to_get)

    def build(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.check_paths()
        if stage in (None, "fit"):
            self.train_set = take_first(self.build(self.train_split, True), self.max_train_samples)
        if stage in (None, "fit", "validate"):
            self.val_set = take_first(self.build(self.val_split, False), self.max_eval_samples)
        if stage in (None, "test", "predict"):
            self.test_sets = [take_first(self.build(s, False), self.max_eval_samples) for s in self.test_split_names]
