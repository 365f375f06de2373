"""LightningDataModule for RefCOCO-family data (real, or synthetic from `samadapt synth`)."""

from __future__ import annotations

from data_modules.base import PromptedSegDataModule, take_first
from data_modules.datasets.refcoco import RefCocoDataset, cached_refs, check_refcoco_paths, refcoco_paths
from samadapt.errors import SamAdaptError

# The published split-bys of each dataset and their evaluation splits (the refer toolkit's layout).
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
        test_splits: list[str] | None = None,
        image_dir: str | None = None,
        image_size: int = 1024,
        num_points: int = 1,
        box_jitter: float = 0.1,
        hflip: bool = False,
        color_jitter: bool = False,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pixel_cache_dir: str | None = None,
        pixel_cache_mb: float = 20000,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
    ):
        """test_splits defaults to every evaluation split of the refs file (unc: val, testA, testB; umd: val, test);
        color_jitter is opt-in (it can break colour words); pixel_cache_dir stores letterboxed pixels on disk
        so later epochs skip decoding and resizing (at most pixel_cache_mb megabytes)."""
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.save_hyperparameters()
        self.root, self.dataset, self.split_by, self.image_dir = root, dataset, split_by, image_dir
        self.train_split, self.val_split = train_split, val_split
        self._test_splits_given = test_splits is not None
        self.test_split_names = list(test_splits) if test_splits is not None else ["val", "testA", "testB"]
        self.image_size, self.num_points, self.box_jitter = image_size, num_points, box_jitter
        self.hflip, self.color_jitter, self.seed = hflip, color_jitter, seed
        self.max_train_samples, self.max_eval_samples = max_train_samples, max_eval_samples
        self.pixel_cache_dir, self.pixel_cache_mb = pixel_cache_dir, pixel_cache_mb

    def _dataset(self, split: str, train: bool) -> RefCocoDataset:
        return RefCocoDataset(
            self.root, self.dataset, self.split_by, split, self.image_dir, self.image_size, train=train,
            num_points=self.num_points, box_jitter=self.box_jitter if train else 0.0,
            hflip=self.hflip and train, seed=self.seed, color_jitter=self.color_jitter and train,
            pixel_cache_dir=self.pixel_cache_dir, pixel_cache_mb=self.pixel_cache_mb,
        )

    def setup(self, stage: str | None = None) -> None:
        check_split_by(self.dataset, self.split_by)
        paths = refcoco_paths(self.root, self.dataset, self.split_by, self.image_dir)
        check_refcoco_paths(paths)
        if not self._test_splits_given:
            self.test_split_names = eval_splits_in(cached_refs(paths["refs"]))
        if stage in (None, "fit"):
            self.train_set = take_first(self._dataset(self.train_split, True), self.max_train_samples)
        if stage in (None, "fit", "validate"):
            self.val_set = take_first(self._dataset(self.val_split, False), self.max_eval_samples)
        if stage in (None, "test", "predict"):
            self.test_sets = [take_first(self._dataset(s, False), self.max_eval_samples)
                              for s in self.test_split_names]
