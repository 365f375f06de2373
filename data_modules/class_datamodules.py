"""LightningDataModules for COCO low-data, ADE20K low-data, COD10K, CelebAMask-HQ and a plain folder.

Each is built by LightningCLI from `data: {class_path: data_modules.XxxDataModule, init_args: {...}}`.
Samples always carry every prompt kind (points, point_labels, box, text); the model picks the mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from data_modules.class_datamodule import ClassSegDataModule
from data_modules.datasets.ade20k import HOW_TO_GET_ADE20K, ade20k_dataset
from data_modules.datasets.celebamask import HOW_TO_GET_CELEBAMASK, CelebAMaskDataset
from data_modules.datasets.coco import HOW_TO_GET_COCO_LOWDATA, coco_lowdata_dataset
from data_modules.datasets.cod10k import HOW_TO_GET_COD10K, Cod10kDataset
from data_modules.datasets.folder import HOW_TO_GET_FOLDER, FolderDataset
from data_modules.datasets.splits import read_split, split_file
from data_modules.pipeline.prompts import PointStrategy
from samadapt.errors import MissingFileError


class _UniMatchDataModule(ClassSegDataModule):
    """Train on `<split_dir>/<split>/labeled.txt`, evaluate on val.txt ("val" is the only eval split)."""

    dataset_name = ""

    def _init_split_dir(self, split_dir: str | None) -> None:
        self.split_dir = Path(split_dir) if split_dir else self.root / "splits" / self.dataset_name

    def check_paths(self) -> None:
        super().check_paths()
        split_file(self.split_dir, self.train_split, "labeled", self.how_to_get)
        split_file(self.split_dir, self.train_split, "val", self.how_to_get)

    def lines(self, split: str):
        name = "val" if split == "val" else "labeled"
        path = split_file(self.split_dir, self.train_split if split == "val" else split, name, self.how_to_get)
        return read_split(path, self.root, self.how_to_get)


class CocoLowDataDataModule(_UniMatchDataModule):
    """COCO 2017 through UniMatch's split files (SAM-PTx's COCO 1_512); instance or semantic targets."""

    how_to_get = HOW_TO_GET_COCO_LOWDATA + "."
    dataset_name = "coco"

    def __init__(
        self,
        root: str,
        split: str = "1_512",
        split_dir: str | None = None,
        mode: Literal["instance", "semantic"] = "instance",
        include_crowd: bool = False,
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 5,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        blur: bool = False,
        text_template: str = "{}",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """split: the UniMatch split folder (1_512, 1_256, ...); split_dir defaults to <root>/splits/coco."""
        super().__init__(root, split, "val", test_splits, image_size, num_points, num_bg_points, point_strategy,
                         box_jitter, hflip, color_jitter, blur, text_template, batch_size, eval_batch_size,
                         num_workers, seed, max_train_samples, max_eval_samples,
                         pixel_cache_dir=pixel_cache_dir, pixel_cache_mb=pixel_cache_mb)
        self.save_hyperparameters()
        self.mode, self.include_crowd = mode, include_crowd
        self._init_split_dir(split_dir)

    def build(self, split: str, train: bool) -> Dataset:
        return coco_lowdata_dataset(self.mode, self.lines(split), self.root, self.options(train), train,
                                    self.text_template, self.include_crowd)


class Ade20kDataModule(_UniMatchDataModule):
    """ADE20K (150 classes) through UniMatch-V2's split files, one sample per class present."""

    how_to_get = HOW_TO_GET_ADE20K + "."
    dataset_name = "ade20k"

    def __init__(
        self,
        root: str,
        split: str = "1_64",
        split_dir: str | None = None,
        reduce_zero_label: bool = False,
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 5,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        blur: bool = False,
        text_template: str = "{}",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """reduce_zero_label: True for the original ADEChallengeData2016 masks (0 = other, 1..150)."""
        super().__init__(root, split, "val", test_splits, image_size, num_points, num_bg_points, point_strategy,
                         box_jitter, hflip, color_jitter, blur, text_template, batch_size, eval_batch_size,
                         num_workers, seed, max_train_samples, max_eval_samples,
                         pixel_cache_dir=pixel_cache_dir, pixel_cache_mb=pixel_cache_mb)
        self.save_hyperparameters()
        self.reduce_zero_label = reduce_zero_label
        self._init_split_dir(split_dir)

    def build(self, split: str, train: bool) -> Dataset:
        return ade20k_dataset(self.lines(split), self.options(train), train, self.text_template,
                              self.reduce_zero_label)


class Cod10kDataModule(ClassSegDataModule):
    """COD10K camouflaged objects (Train / Test); the usual camouflaged-only subset by default."""

    how_to_get = HOW_TO_GET_COD10K

    def __init__(
        self,
        root: str,
        text_mode: Literal["fixed", "class"] = "fixed",
        fixed_text: str = "camouflaged object",
        camouflaged_only: bool = True,
        train_split: Literal["Train", "Test"] = "Train",
        val_split: Literal["Train", "Test"] = "Test",
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 1,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        blur: bool = False,
        text_template: str = "{}",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """text_mode "fixed" uses fixed_text; "class" the class in the file name with text_template applied."""
        super().__init__(root, train_split, val_split, test_splits, image_size, num_points, num_bg_points,
                         point_strategy, box_jitter, hflip, color_jitter, blur, text_template, batch_size,
                         eval_batch_size, num_workers, seed, max_train_samples, max_eval_samples,
                         pixel_cache_dir=pixel_cache_dir, pixel_cache_mb=pixel_cache_mb)
        self.save_hyperparameters()
        self.text_mode, self.fixed_text, self.camouflaged_only = text_mode, fixed_text, camouflaged_only

    def build(self, split: str, train: bool) -> Dataset:
        return Cod10kDataset(self.root, split, self.options(train), train, self.text_mode,  # type: ignore[arg-type]
                             self.fixed_text, self.text_template, self.camouflaged_only)


class CelebAMaskDataModule(ClassSegDataModule):
    """CelebAMask-HQ facial parts, official train / val / test partition."""

    how_to_get = HOW_TO_GET_CELEBAMASK

    def __init__(
        self,
        root: str,
        parts: list[str] | None = None,
        train_split: Literal["train", "val", "test"] = "train",
        val_split: Literal["train", "val", "test"] = "val",
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 1,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        blur: bool = False,
        text_template: str = "{}",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """parts: a subset of the 18 part names (skin, nose, eye_g, l_eye, ...); default all. test_splits: [test]."""
        super().__init__(root, train_split, val_split, test_splits if test_splits is not None else ["test"],
                         image_size, num_points, num_bg_points, point_strategy, box_jitter, hflip, color_jitter,
                         blur, text_template, batch_size, eval_batch_size, num_workers, seed, max_train_samples,
                         max_eval_samples,
                         pixel_cache_dir=pixel_cache_dir, pixel_cache_mb=pixel_cache_mb)
        self.save_hyperparameters()
        self.parts = tuple(parts) if parts else None

    def check_paths(self) -> None:
        super().check_paths()
        for name in ("CelebA-HQ-to-CelebA-mapping.txt", "list_eval_partition.txt"):
            if not (self.root / name).is_file():
                raise MissingFileError(self.root / name, "CelebAMask-HQ partition file", self.how_to_get)

    def build(self, split: str, train: bool) -> Dataset:
        return CelebAMaskDataset(self.root, split, self.options(train), train,  # type: ignore[arg-type]
                                 self.text_template, self.parts)


class FolderDataModule(ClassSegDataModule):
    """Task-specific data in `<root>/<split>/images` + `masks` (+ optional texts.json)."""

    how_to_get = HOW_TO_GET_FOLDER

    def __init__(
        self,
        root: str,
        default_text: str = "",
        classes: list[str] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 1,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        blur: bool = False,
        text_template: str = "{}",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """default_text: text of images without a texts.json entry; classes: allowed class names (optional)."""
        super().__init__(root, train_split, val_split, test_splits, image_size, num_points, num_bg_points,
                         point_strategy, box_jitter, hflip, color_jitter, blur, text_template, batch_size,
                         eval_batch_size, num_workers, seed, max_train_samples, max_eval_samples,
                         pixel_cache_dir=pixel_cache_dir, pixel_cache_mb=pixel_cache_mb)
        self.save_hyperparameters()
        self.default_text = default_text
        self.classes = tuple(classes) if classes is not None else None

    def build(self, split: str, train: bool) -> Dataset:
        return FolderDataset(self.root, split, self.options(train), train, self.default_text, self.classes,
                             self.text_template)
