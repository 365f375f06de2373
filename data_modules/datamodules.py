"""The LightningDataModules: RefCOCO family, COCO and ADE20K low-data, COD10K, CelebAMask-HQ and a plain folder.

Each is built by LightningCLI from `data: {class_path: data_modules.XxxDataModule, init_args: {...}}`. A DataModule
states only its own arguments and hands the rest (`**kwargs`) to its parent, whose arguments LightningCLI lists
with theirs. Samples always carry every prompt kind (points, point_labels, box, text); the model picks the mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from data_modules.datasets.ade20k import HOW_TO_GET_ADE20K, ade20k_dataset
from data_modules.datasets.celebamask import HOW_TO_GET_CELEBAMASK, CelebAMaskDataset
from data_modules.datasets.coco import HOW_TO_GET_COCO_LOWDATA, coco_lowdata_dataset
from data_modules.datasets.cod10k import HOW_TO_GET_COD10K, Cod10kDataset
from data_modules.datasets.folder import HOW_TO_GET_FOLDER, FolderDataset
from data_modules.datasets.refcoco import RefCocoDataset, cached_refs, check_refcoco_paths, refcoco_paths
from data_modules.datasets.splits import read_split, split_file
from data_modules.pipeline.augment import JitterStyle, check_color_jitter
from data_modules.pipeline.binary import SampleOptions, check_template
from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.prompts import PointStrategy
from data_modules.pipeline.resumable import EvalShardSampler, ResumableDataLoader, ResumableSampler, SeededDataset
from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.sam.preprocess import LETTERBOXES, Letterbox


def check_long_sides(sizes: list[int] | None, image_size: int) -> tuple[int, ...] | None:
    """The scale augmentation's sizes as a tuple; each must fit the frame."""
    if not sizes:
        return None
    bad = [s for s in sizes if not isinstance(s, int) or not 0 < s <= image_size]
    if bad:
        raise SamAdaptError(f"random_long_side {list(sizes)}: {bad} not a whole number in 1..{image_size} (the "
                            f"image_size); the content is resized to one of these sizes inside the "
                            f"{image_size} x {image_size} frame. With another image_size, give sizes that fit "
                            f"(DIT's: image_size - 32 i, i = 0..6) or null.")
    return tuple(sizes)


def check_letterbox(letterbox: str) -> Letterbox:
    if letterbox not in LETTERBOXES:
        raise SamAdaptError(f"letterbox must be one of {', '.join(LETTERBOXES)}, got {letterbox!r}")
    return letterbox  # type: ignore[return-value]


def check_counts(minimum: int, **values: int | None) -> None:
    """Each named count (None: not set) is a whole number >= minimum; DataLoader and the samplers fail obscurely."""
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise SamAdaptError(f"data.init_args.{name}={value!r} must be a whole number >= {minimum}")


def image_groups(ds: Dataset) -> list[list[int]]:
    """The dataset's indices grouped by the image they read, in order of first appearance."""
    base, indices = (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, None)
    targets = getattr(base, "targets", None)
    if targets is None:
        raise SamAdaptError(f"group_by_image needs a dataset that lists its targets; {type(base).__name__} does not")
    groups: dict[str, list[int]] = {}
    for position in range(len(ds)):  # type: ignore[arg-type]
        groups.setdefault(targets[position if indices is None else indices[position]].image, []).append(position)
    return list(groups.values())


def take_first(ds: Dataset, n: int | None) -> Dataset:
    """The first n samples of ds (all if n is None or larger); deterministic, for quick runs."""
    if n is None or n >= len(ds):  # type: ignore[arg-type]
        return ds
    return Subset(ds, range(n))


class PromptedSegDataModule(LightningDataModule):
    """Sample options and loaders shared by every DataModule.

    Subclasses set `train_split` and `val_split`, implement `build(split, train)` and may override `check_paths()`
    and `default_test_splits()`.
    """

    how_to_get: str = "See README, Datasets."

    def __init__(
        self,
        root: str,
        test_splits: list[str] | None = None,
        image_size: int = 1024,
        num_points: int = 1,
        train_num_points: list[int] | None = None,
        num_bg_points: int = 0,
        point_strategy: PointStrategy = "uniform",
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        color_jitter_strength: float = 0.2,
        color_jitter_p: float | None = None,
        color_jitter_style: JitterStyle = "albumentations",
        blur: bool = False,
        random_long_side: list[int] | None = None,
        letterbox: Letterbox = "top_left",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        group_by_image: bool = False,
    ):
        """
        Args:
            root: the data root
            test_splits: the splits to test on, in order (default: the dataset's evaluation splits)
            image_size: side of the square, letterboxed model input (`samadapt fit` sets it from the model's)
            num_points: foreground points per sample
            train_num_points: training: each sample's foreground point count drawn from these, e.g. [1, 2, 3], so
                a model learns what one click and what several mean (null: always num_points)
            num_bg_points: background points per sample, drawn outside the object
            point_strategy: uniform: anywhere on the object; interior: away from its boundary
            box_jitter: training: each side of the box moves by up to this fraction of the box's size
            hflip: training: mirror half the samples, swapping "left" and "right" in their text
            color_jitter: training: brightness, contrast and saturation jitter (opt-in: it can break colour words)
            color_jitter_strength: each jitter factor is drawn from [1 - strength, 1 + strength] (DIT: 0.4)
            color_jitter_p: probability of jittering a read (null: the dataset's own, 1.0 for RefCOCO, 0.8 others)
            color_jitter_style: albumentations (torchvision's formulas) or pil (PIL ImageEnhance, as DIT's code)
            blur: training: Gaussian blur on some samples
            random_long_side: training: the content's long side drawn from these sizes (each <= image_size) and
                the image letterboxed at that size inside the image_size frame (DIT: [512, 480, ..., 320]; null: off)
            letterbox: where the content sits in the frame: top_left (SAM) or center (DIT); `samadapt fit` sets it
                from model.letterbox
            batch_size: training samples per batch and process
            eval_batch_size: evaluation samples per batch and process
            num_workers: DataLoader worker processes
            pixel_cache_dir: folder keeping letterboxed pixels, so later epochs and runs skip decoding (null: off)
            pixel_cache_mb: size limit of the pixel cache in megabytes
            seed: seeds the training order and draws, and the evaluation prompts
            max_train_samples: train on the first N samples only (quick runs)
            max_eval_samples: evaluate on the first N samples of each split only
            group_by_image: training: the shuffled order keeps each image's samples together, so a batch holds
                several referents of one scene and only their texts tell them apart (the demo's referring runs)
        """
        super().__init__()
        self.save_hyperparameters()  # with the arguments of every subclass (Lightning reads their frames)
        check_counts(1, batch_size=batch_size, eval_batch_size=eval_batch_size, image_size=image_size,
                     max_train_samples=max_train_samples, max_eval_samples=max_eval_samples)
        check_counts(0, num_workers=num_workers, num_points=num_points, num_bg_points=num_bg_points)
        if train_num_points is not None:
            check_counts(1, **{f"train_num_points[{i}]": k for i, k in enumerate(train_num_points)})
        self.root = Path(root)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed, self.max_train_samples, self.max_eval_samples = seed, max_train_samples, max_eval_samples
        self.group_by_image = group_by_image
        self.test_splits = None if test_splits is None else list(test_splits)
        check_color_jitter(color_jitter_strength, color_jitter_p, color_jitter_style)
        long_sides = check_long_sides(random_long_side, image_size)
        common = dict(image_size=image_size, num_points=num_points, num_bg_points=num_bg_points,
                      point_strategy=point_strategy, seed=seed, pixel_cache_dir=pixel_cache_dir,
                      pixel_cache_mb=pixel_cache_mb, letterbox=check_letterbox(letterbox))
        self.train_options = SampleOptions(**common, box_jitter=box_jitter, hflip=hflip, color_jitter=color_jitter,
                                           color_jitter_strength=color_jitter_strength, color_jitter_p=color_jitter_p,
                                           color_jitter_style=color_jitter_style, blur=blur,
                                           random_long_side=long_sides,
                                           train_num_points=tuple(train_num_points) if train_num_points else None)
        self.eval_options = SampleOptions(**common)
        self.train_split = self.val_split = ""
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_sets: list[Dataset] = []
        self.test_split_names: list[str] = []

    def options(self, train: bool) -> SampleOptions:
        return self.train_options if train else self.eval_options

    def check_paths(self) -> None:
        if not self.root.is_dir():
            raise MissingFileError(self.root, f"{type(self).__name__} data root", self.how_to_get)

    def default_test_splits(self) -> list[str]:
        return [self.val_split]

    def build(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.check_paths()
        self.test_split_names = self.test_splits if self.test_splits is not None else self.default_test_splits()
        if stage in (None, "fit"):
            self.train_set = take_first(self.build(self.train_split, True), self.max_train_samples)
        if stage in (None, "fit", "validate"):
            self.val_set = take_first(self.build(self.val_split, False), self.max_eval_samples)
        if stage in (None, "test", "predict"):
            self.test_sets = [take_first(self.build(s, False), self.max_eval_samples) for s in self.test_split_names]

    def _world(self) -> tuple[int, int]:
        """(number of processes, this process's rank) of the attached trainer; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _batches_done(self) -> int:
        """Batches of the current epoch that training has consumed (saved in checkpoints for exact resume)."""
        trainer = getattr(self, "trainer", None)
        return trainer.fit_loop.epoch_loop.batch_progress.current.ready if trainer is not None else 0

    def _loader(self, ds: Dataset | None, batch_size: int, shuffle: bool, what: str) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built the {what} set")
        if len(ds) == 0:  # type: ignore[arg-type]
            raise SamAdaptError(
                f"the {what} set of {type(self).__name__} is empty (root {self.root}); check the "
                "split names and that its files exist (`samadapt inspect-data` lists them).")
        world, rank = self._world()
        common = dict(
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_prompted,
            generator=torch.Generator(),  # worker seeds never consume the global RNG (exact resume)
        )
        if shuffle:  # training: seeded order and per-sample randomness, position saved in checkpoints
            seed = torch.initial_seed() + int(self.seed or 0)
            groups = image_groups(ds) if self.group_by_image else None
            sampler = ResumableSampler(len(ds), seed, shuffle=True, num_replicas=world, rank=rank,  # type: ignore[arg-type]
                                       groups=groups)
            return ResumableDataLoader(SeededDataset(ds), sampler=sampler, drop_last=len(sampler) > batch_size,
                                       batches_done=self._batches_done, **common)
        sampler = EvalShardSampler(len(ds), world, rank) if world > 1 else None  # type: ignore[arg-type]
        return DataLoader(ds, sampler=sampler, shuffle=False, drop_last=False, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, True, "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, False, "validation")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per test split, in the order of `test_split_names`."""
        if not self.test_sets:
            raise RuntimeError(f"{type(self).__name__}.setup('test') has not built the test sets")
        return [self._loader(ds, self.eval_batch_size, False, "test") for ds in self.test_sets]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()


# The published split-bys of each RefCOCO dataset and their evaluation splits (the refer toolkit's layout).
REFCOCO_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "refcoco": {"unc": ("val", "testA", "testB"), "google": ("val", "test")},
    "refcoco+": {"unc": ("val", "testA", "testB")},
    "refcocog": {"umd": ("val", "test"), "google": ("val",)},
}
EVAL_ORDER = ("val", "testA", "testB", "test")


def check_split_by(dataset: str, split_by: str) -> None:
    """Stop on a split-by that does not exist for a known dataset (synthetic or custom names pass)."""
    known = REFCOCO_SPLITS.get(dataset)
    if known is not None and split_by not in known:
        raise SamAdaptError(f"{dataset} has no split_by {split_by!r}; choose one of {', '.join(known)}.")


def eval_splits_in(refs: list[dict]) -> list[str]:
    """The evaluation splits present in a refs file, in the usual order (val, testA, testB, test, others)."""
    present = {str(r.get("split")) for r in refs} - {"train"}
    return [s for s in EVAL_ORDER if s in present] + sorted(present - set(EVAL_ORDER))


class RefCocoDataModule(PromptedSegDataModule):
    """Train / val / test splits of one refs file; paths are checked at setup with clear errors."""

    def __init__(
        self,
        root: str,
        dataset: str = "refcoco",
        split_by: str = "unc",
        train_split: str = "train",
        val_split: str = "val",
        image_dir: str | None = None,
        **kwargs,
    ):
        """
        Args:
            root: folder holding <dataset>/refs(<split_by>).p, <dataset>/instances.json and images/train2014
            dataset: refcoco, refcoco+, refcocog, or the name of a synthetic set (shapes)
            split_by: the refs file: unc (RefCOCO, RefCOCO+), umd or google (RefCOCOg)
            train_split: split to train on
            val_split: split to validate on (test_splits defaults to every evaluation split of the refs file)
            image_dir: the COCO train2014 images, if not in <root>/images/train2014
        """
        super().__init__(root, **kwargs)
        self.dataset, self.split_by, self.image_dir = dataset, split_by, image_dir
        self.train_split, self.val_split = train_split, val_split

    def check_paths(self) -> None:
        check_split_by(self.dataset, self.split_by)
        check_refcoco_paths(refcoco_paths(self.root, self.dataset, self.split_by, self.image_dir))

    def default_test_splits(self) -> list[str]:
        return eval_splits_in(cached_refs(refcoco_paths(self.root, self.dataset, self.split_by, None)["refs"]))

    def build(self, split: str, train: bool) -> Dataset:
        return RefCocoDataset(self.root, self.dataset, self.split_by, split, self.image_dir, self.options(train),
                              train)


class ClassSegDataModule(PromptedSegDataModule):
    """Datasets whose text is a class or part name, put into `text_template`."""

    def __init__(self, root: str, text_template: str = "{}", **kwargs):
        """
        Args:
            text_template: the text made of a class name, e.g. "a photo of a {}"
        """
        super().__init__(root, **kwargs)
        self.text_template = check_template(text_template)


class _UniMatchDataModule(ClassSegDataModule):
    """Train on `<split_dir>/<split>/labeled.txt`, evaluate on val.txt ("val" is the only eval split)."""

    dataset_name = ""

    def __init__(self, root: str, split: str, split_dir: str | None = None, num_points: int = 5, **kwargs):
        """
        Args:
            split: the UniMatch split folder (1_512, 1_256, ...)
            split_dir: the folder of the split folders (default: <root>/splits/<dataset>)
            num_points: foreground points per sample
        """
        super().__init__(root, num_points=num_points, **kwargs)
        self.train_split, self.val_split = split, "val"
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
        mode: Literal["instance", "semantic"] = "instance",
        include_crowd: bool = False,
        **kwargs,
    ):
        """
        Args:
            root: folder holding train2017/, val2017/, masks/, annotations/ and splits/coco/
            split: the UniMatch split folder (1_512, 1_256, ...)
            mode: instance: one sample per object; semantic: one per class present in the class mask
            include_crowd: instance mode: keep COCO's crowd regions as objects
        """
        super().__init__(root, split, **kwargs)
        self.mode, self.include_crowd = mode, include_crowd

    def build(self, split: str, train: bool) -> Dataset:
        return coco_lowdata_dataset(self.mode, self.lines(split), self.root, self.options(train), train,
                                    self.text_template, self.include_crowd)


class Ade20kDataModule(_UniMatchDataModule):
    """ADE20K (150 classes) through UniMatch-V2's split files, one sample per class present."""

    how_to_get = HOW_TO_GET_ADE20K + "."
    dataset_name = "ade20k"

    def __init__(self, root: str, split: str = "1_64", reduce_zero_label: bool = False, **kwargs):
        """
        Args:
            root: the data root, holding the images and masks the split files name and splits/ade20k/
            split: the UniMatch split folder (1_64, 1_128, ...)
            reduce_zero_label: true for the original ADEChallengeData2016 masks (0 = other, 1..150)
        """
        super().__init__(root, split, **kwargs)
        self.reduce_zero_label = reduce_zero_label

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
        **kwargs,
    ):
        """
        Args:
            root: folder holding Train/ and Test/, each with Image/ and GT_Object/
            text_mode: fixed: every sample's text is fixed_text; class: the class in the file name, templated
            fixed_text: the text of every sample in text_mode fixed
            camouflaged_only: leave out the NonCAM images (the usual subset)
            train_split: split to train on
            val_split: split to validate on
        """
        super().__init__(root, **kwargs)
        self.text_mode, self.fixed_text, self.camouflaged_only = text_mode, fixed_text, camouflaged_only
        self.train_split, self.val_split = train_split, val_split

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
        **kwargs,
    ):
        """
        Args:
            root: the unzipped CelebAMask-HQ, with CelebA's list_eval_partition.txt added
            parts: a subset of the 18 part names (skin, nose, eye_g, l_eye, ...); default all
            train_split: split to train on
            val_split: split to validate on (test_splits defaults to [test])
        """
        super().__init__(root, **kwargs)
        self.parts = tuple(parts) if parts else None
        self.train_split, self.val_split = train_split, val_split

    def default_test_splits(self) -> list[str]:
        return ["test"]

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
        **kwargs,
    ):
        """
        Args:
            root: folder holding <split>/images, <split>/masks and optionally <split>/texts.json
            default_text: the text of images without a texts.json entry
            classes: the allowed class names (texts.json entries); a sample's class id is its index
            train_split: split to train on
            val_split: split to validate on
        """
        super().__init__(root, **kwargs)
        self.default_text = default_text
        self.classes = tuple(classes) if classes is not None else None
        self.train_split, self.val_split = train_split, val_split

    def build(self, split: str, train: bool) -> Dataset:
        return FolderDataset(self.root, split, self.options(train), train, self.default_text, self.classes,
                             self.text_template)
