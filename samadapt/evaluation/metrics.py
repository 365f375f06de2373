"""Evaluation metrics as torchmetrics `Metric`s, exact under several processes.

Every metric keeps one record per sample: a row of float64 numbers (pixel counts, scores) keyed by a hash of
the sample id. torchmetrics gathers the records of every process; `compute()` drops duplicate keys (a
distributed sampler pads the last batch with samples another process already evaluated) and then reduces
the records with sums and means over the whole split. Per-process averages are never combined, and a split
gives the same numbers on one process or on many.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from samadapt.errors import SamAdaptError

ANONYMOUS = -1.0  # key of a record without a sample id: always kept, never deduplicated


def sample_key(sample_id: str) -> float:
    """A 52-bit hash of a sample id, exact as a float64, so keys travel in the same rows as the values."""
    digest = hashlib.blake2b(str(sample_id).encode(), digest_size=8).digest()
    return float(int.from_bytes(digest, "big") >> 12)


def threshold_key(threshold: float) -> str:
    """Name of a precision-at-threshold entry in the shortest form: 0.5 -> "P@0.5"."""
    return f"P@{threshold:g}"


class SampleRecords(Metric):
    """Base class: one float64 row of `width` values per sample, deduplicated by sample id in `table()`.

    A sample id seen twice by the same process is a dataset error (ids must be unique within a split):
    padding by a distributed sampler only ever repeats a sample on another process.
    """

    full_state_update = False
    is_differentiable = False
    width: int = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Flat 1-D float64 chunks: processes with different numbers of samples gather without trouble.
        self.add_state("records", [], dist_reduce_fx="cat")
        self._ids: dict[float, str] = {}  # key -> sample id, of this process's samples

    @property
    def dtype(self) -> torch.dtype:
        # torchmetrics gives a process without samples an empty tensor of this dtype to gather; it must
        # match the float64 records of the other processes (moving the metric resets the stored dtype).
        return torch.float64

    def _keys(self, sample_ids: Sequence[str] | None, count: int) -> torch.Tensor:
        if sample_ids is None:
            return torch.full((count,), ANONYMOUS, dtype=torch.float64)
        if len(sample_ids) != count:
            raise ValueError(f"{len(sample_ids)} sample ids for {count} samples")
        keys = []
        for sid in sample_ids:
            key = sample_key(sid)
            if key in self._ids:
                raise SamAdaptError(f"sample id {sid!r} was evaluated twice in one split; sample ids must be "
                                    "unique within a split, or the sample would be counted twice.")
            self._ids[key] = str(sid)
            keys.append(key)
        return torch.tensor(keys, dtype=torch.float64)

    def _add(self, rows: torch.Tensor, sample_ids: Sequence[str] | None) -> None:
        rows = rows.detach().to(dtype=torch.float64).reshape(rows.shape[0], self.width)
        keys = self._keys(sample_ids, rows.shape[0]).to(rows.device)
        self.records.append(torch.cat([keys[:, None], rows], 1).flatten().to(self.device))

    def keyed_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys (N,), rows (N, width)) of every distinct sample (all processes, after sync), in a fixed order."""
        if isinstance(self.records, list) and not self.records:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, self.width, dtype=torch.float64)
        flat = dim_zero_cat(self.records).double().cpu()
        rows = flat.reshape(-1, self.width + 1)
        keys = rows[:, 0].numpy()
        named = np.flatnonzero(keys != ANONYMOUS)
        _, first = np.unique(keys[named], return_index=True)  # first copy of each key, in key order
        keep = torch.from_numpy(np.concatenate([named[first], np.flatnonzero(keys == ANONYMOUS)]))
        return rows[keep, 0], rows[keep, 1:]

    def table(self) -> torch.Tensor:
        """(N, width) float64 rows of every distinct sample (all processes, after sync), in a fixed order."""
        return self.keyed_table()[1]

    def sample_ids(self) -> dict[float, str]:
        """key -> sample id for the samples of every process. A collective: call it on every process."""
        ids = dict(self._ids)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self._ids)
            for part in gathered:
                ids.update(part)
        return ids

    def reset(self) -> None:
        super().reset()
        self._ids = {}


def intersection_union(
    pred: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (intersection, union) pixel counts of binary masks (B, ...); `ignore` pixels count for neither."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dtype.is_floating_point or target.dtype.is_floating_point:
        raise TypeError("pass binary masks (bool or 0/1 integers); threshold probabilities or logits first")
    pred = pred.reshape(pred.shape[0], -1).bool()
    target = target.reshape(target.shape[0], -1).bool()
    if ignore is not None:
        keep = ~ignore.reshape(pred.shape).bool()
        pred, target = pred & keep, target & keep
    return (pred & target).sum(1), (pred | target).sum(1)


def iou_of(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """IoU per sample; an empty prediction of an empty target scores 1.0 (nothing to find, nothing found)."""
    ones = torch.ones_like(union, dtype=torch.float64)
    return torch.where(union > 0, inter.double() / union.double().clamp(min=1), ones)


def per_sample_iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (intersection, union, IoU) of binary masks shaped (B, ...)."""
    inter, union = intersection_union(pred, target)
    return inter, union, iou_of(inter, union)


class ReferringMetrics(SampleRecords):
    """Referring segmentation metrics: oIoU, mIoU and P@k over (referent, sentence) samples.

    update(pred, target, sample_ids=None, ignore=None): binary masks (B, H, W) (any shape with the batch first).
    compute() -> {"oIoU": total intersection / total union over all samples,
                  "mIoU": mean of per-sample IoUs,
                  "P@0.5": fraction of samples with IoU > 0.5 (strict=True, as the published DIT
                           code) or IoU >= 0.5 (strict=False, as LAVT), and one entry per threshold}.
    An empty prediction of an empty target has IoU 1.0 and adds nothing to the oIoU sums (if
    every sample is empty/empty, oIoU is 1.0). With no samples at all every value is 0.0.
    """

    higher_is_better = True
    width = 2  # intersection, union (pixel counts; exact in float64 up to 2**53)

    def __init__(self, thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9), strict: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        if len({threshold_key(t) for t in self.thresholds}) != len(self.thresholds):
            raise ValueError(f"thresholds must be distinct, got {self.thresholds}")
        self.strict = strict

    def update(self, pred: torch.Tensor, target: torch.Tensor, sample_ids: Sequence[str] | None = None,
               ignore: torch.Tensor | None = None) -> None:
        inter, union = intersection_union(pred, target, ignore)
        self._add(torch.stack([inter, union], 1), sample_ids)

    def per_sample(self) -> list[dict]:
        """{"sample_id", "intersection", "union", "IoU"} per distinct sample. Collective: call on every process."""
        with self.sync_context():  # the records of every process, as compute() sees them
            keys, table = self.keyed_table()
        ids = self.sample_ids()
        ious = iou_of(table[:, 0], table[:, 1])
        return [{"sample_id": ids.get(float(k), ""), "intersection": int(r[0]), "union": int(r[1]), "IoU": float(i)}
                for k, r, i in zip(keys.tolist(), table, ious.tolist(), strict=True)]

    def compute(self) -> dict[str, torch.Tensor]:
        table = self.table()
        if len(table) == 0:
            out = {"oIoU": 0.0, "mIoU": 0.0, **{threshold_key(t): 0.0 for t in self.thresholds}}
            return {k: torch.tensor(v) for k, v in out.items()}
        inter, union = table[:, 0], table[:, 1]
        iou = iou_of(inter, union)
        total_union = union.sum()
        out = {"oIoU": inter.sum() / total_union if total_union > 0 else torch.tensor(1.0, dtype=torch.float64),
               "mIoU": iou.mean()}
        for t in self.thresholds:
            out[threshold_key(t)] = ((iou > t) if self.strict else (iou >= t)).double().mean()
        # Sums and ratios are taken in float64; results are float32 for loggers.
        return {k: v.float() for k, v in out.items()}
