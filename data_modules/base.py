"""Shared LightningDataModule plumbing for datasets that yield prompted-segmentation samples."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.resumable import EvalShardSampler, ResumableDataLoader, ResumableSampler, SeededDataset
from samadapt.errors import SamAdaptError


def take_first(ds: Dataset, n: int | None) -> Dataset:
    """The first n samples of ds (all if n is None or larger); deterministic, for quick runs."""
    if n is None or n >= len(ds):  # type: ignore[arg-type]
        return ds
    return Subset(ds, range(n))


class PromptedSegDataModule(LightningDataModule):
    """Builds the dataloaders; subclasses fill train_set, val_set and test_sets in setup()."""

    def __init__(self, batch_size: int = 8, eval_batch_size: int = 8, num_workers: int = 0):
        super().__init__()
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_sets: list[Dataset] = []
        self.test_split_names: list[str] = []

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
                f"the {what} set of {type(self).__name__} is empty (root {getattr(self, 'root', '?')}); check the "
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
            seed = torch.initial_seed() + int(getattr(self, "seed", 0) or 0)
            sampler = ResumableSampler(len(ds), seed, shuffle=True, num_replicas=world, rank=rank)  # type: ignore[arg-type]
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
