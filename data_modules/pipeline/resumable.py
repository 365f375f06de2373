"""A training loader that resumes mid-epoch exactly, with the same samples and the same augmentation.

Two ideas make a resumed run see exactly the data an uninterrupted one would have seen:
- the sampler's order is a function of (seed, epoch) and it can skip the batches already trained on;
  its position is saved in checkpoints through the loader's state_dict (Lightning saves and restores
  the state of every train loader that has state_dict / load_state_dict);
- every sample's randomness (sentence choice, flip, prompts, colour jitter) comes from a seed made of
  (seed, epoch, position in the epoch), not from a running random state. So prefetching, the number of
  worker processes and a restart in the middle of an epoch cannot change what a sample looks like.

Under several processes the sampler also shards the epoch (it is a DistributedSampler, so Lightning
leaves it in place): every rank sees its own slice of the same permutation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one (epoch, position) of a run; neighbouring positions get unrelated streams."""
    return (seed * _MIX[0] + epoch * _MIX[1] + position) % (2**63)


class ResumableSampler(DistributedSampler):
    """Yields (dataset index, sample seed) pairs: a seeded permutation per epoch, sharded over ranks.

    `skip_samples(n)` makes the next iteration start after the first n samples of this rank's slice.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0,
                 groups: list[list[int]] | None = None):
        """`groups`: indices to keep together (each image's samples): the order shuffles the groups, then the
        indices inside each, so consecutive samples, and so a batch, share an image."""
        # DistributedSampler.__init__ insists on an initialised process group; set what it would set.
        self.dataset_size, self.seed, self.shuffle, self.groups = size, int(seed), shuffle, groups
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self.num_samples = -(-size // num_replicas)  # ceil: the last ranks repeat the first samples
        self.total_size = self.num_samples * num_replicas
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # a pending skip belongs to the epoch it was saved in
            self.epoch, self._skip = epoch, 0

    def skip_samples(self, count: int) -> None:
        self._skip = count

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
            if self.groups:
                order = [self.groups[g][k] for g in torch.randperm(len(self.groups), generator=gen).tolist()
                         for k in torch.randperm(len(self.groups[g]), generator=gen).tolist()]
            else:
                order = torch.randperm(self.dataset_size, generator=gen).tolist()
        else:
            order = list(range(self.dataset_size))
        positions = list(range(self.rank, self.total_size, self.num_replicas))
        skip, self._skip = self._skip, 0
        for position in positions[skip:]:
            yield order[position % self.dataset_size], sample_seed(self.seed, self.epoch, position)


class SeededDataset(Dataset):
    """Reads `dataset[index]` with torch, numpy and python RNGs seeded by the key's seed, then restores them."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if get_worker_info() is not None:  # a worker's generators serve only its own samples: nothing to restore
            _seed_all(seed)
            return self.dataset[index]
        # In the training process itself: leave its generators as they were (saving numpy's costs ~0.1 ms).
        torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
        try:
            _seed_all(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            np.random.set_state(np_state)
            random.setstate(py_state)


def _seed_all(seed: int) -> None:
    # The CPU generator only: torch.manual_seed also queues a CUDA/XPU seeding, recording a Python stack trace
    # each call (~1 ms a sample); workers never draw from device generators.
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ResumableSampler whose position Lightning saves in checkpoints.

    `batches_done()` tells how many batches of the current epoch training has consumed (the loader's own
    iterator runs ahead: prefetching and worker processes); the data module reads it from the trainer.
    """

    def __init__(self, *args, batches_done: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError("ResumableDataLoader needs a ResumableSampler")
        self._batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        done = self._batches_done() if self._batches_done is not None else 0
        return {"epoch": self.sampler.epoch, "batches_done": int(done), "batch_size": int(self.batch_size or 1)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            epoch, done = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.skip_samples(done * int(state.get("batch_size", self.batch_size or 1)))


class EvalShardSampler(DistributedSampler):
    """Evaluation under several processes: rank r reads samples r, r + W, r + 2W, ... with no padding,
    so no sample is counted twice and the all-reduced metrics equal a single-process run."""

    def __init__(self, size: int, num_replicas: int, rank: int):
        self.dataset_size, self.num_replicas, self.rank, self.epoch = size, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_size, self.num_replicas))
