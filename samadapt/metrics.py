"""Evaluation metrics as torchmetrics `Metric`s, exact under several processes.

Every state is a sum (dist_reduce_fx="sum"), so all-reducing the states gives exactly the metric
of all samples together; no per-process averages are ever combined. Samples duplicated by a
distributed sampler's padding would still be counted twice: evaluate with a sampler that does
not pad (or on one device) for exact split-level numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def threshold_key(threshold: float) -> str:
    """Name of a precision-at-threshold entry in the shortest form: 0.5 -> "P@0.5"."""
    return f"P@{threshold:g}"


def per_sample_iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (intersection, union, IoU) of binary masks shaped (B, ...).

    An empty prediction of an empty target has IoU 1.0 (nothing to find, nothing found).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dtype.is_floating_point or target.dtype.is_floating_point:
        raise TypeError("pass binary masks (bool or 0/1 integers); threshold probabilities or logits first")
    pred = pred.reshape(pred.shape[0], -1).bool()
    target = target.reshape(target.shape[0], -1).bool()
    inter = (pred & target).sum(1)
    union = (pred | target).sum(1)
    ones = torch.ones_like(union, dtype=torch.float64)
    iou = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), ones)
    return inter, union, iou


class ReferringMetrics(Metric):
    """Referring segmentation metrics: oIoU, mIoU and P@k over (referent, sentence) samples.

    update(pred, target): binary masks (B, H, W) (any shape with the batch first), one sample each.
    compute() -> {"oIoU": total intersection / total union over all samples,
                  "mIoU": mean of per-sample IoUs,
                  "P@0.5": fraction of samples with IoU > 0.5 (strict=True, as the published DIT
                           code) or IoU >= 0.5 (strict=False, as LAVT), and one entry per threshold}.
    An empty prediction of an empty target has IoU 1.0 and adds nothing to the oIoU sums (if
    every sample is empty/empty, oIoU is 1.0). With no samples at all every value is 0.0.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9), strict: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        if len({threshold_key(t) for t in self.thresholds}) != len(self.thresholds):
            raise ValueError(f"thresholds must be distinct, got {self.thresholds}")
        self.strict = strict
        # Pixel counts are integers: int64 sums are exact at any dataset size.
        self.add_state("intersection", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("union", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        inter, union, iou = per_sample_iou(pred, target)
        self.intersection += inter.sum()
        self.union += union.sum()
        self.iou_sum += iou.sum()
        self.count += iou.numel()
        levels = torch.tensor(self.thresholds, dtype=torch.float64, device=iou.device)
        above = iou.unsqueeze(1) > levels if self.strict else iou.unsqueeze(1) >= levels
        self.hits += above.sum(0)

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.double()
        if self.count == 0:
            zero = torch.tensor(0.0, dtype=torch.float64, device=self.count.device)
            out = {"oIoU": zero, "mIoU": zero}
            out.update({threshold_key(t): zero for t in self.thresholds})
            return {k: v.float() for k, v in out.items()}
        if self.union > 0:
            oiou = self.intersection.double() / self.union.double()
        else:
            oiou = torch.tensor(1.0, dtype=torch.float64, device=self.count.device)
        out = {"oIoU": oiou, "mIoU": self.iou_sum / count}
        for i, t in enumerate(self.thresholds):
            out[threshold_key(t)] = self.hits[i].double() / count
        # Sums and ratios are taken in int64/float64; results are float32 for loggers.
        return {k: v.float() for k, v in out.items()}
