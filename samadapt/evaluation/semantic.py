"""Semantic low-data tables: dataset-level per-class IoU and the per-object mIoU that SAM-PTx reports.

Samples are binary targets that carry a class id: one object (COCO instance mode) or one class of one
image (semantic label maps), each prompted on its own.
- classIoU: for each class, intersections and unions summed over every sample of the split, IoU = I / U,
  then the mean over the classes present (classes with a non-zero union). As mmseg and UniMatch compute
  mIoU, restricted to the (image, class) pairs that were prompted.
- objectIoU: the mean of per-sample IoUs (each object, or each class of each image, weighs the same).
Pixels marked ignore (label 255) count for neither prediction nor target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from samadapt.errors import SamAdaptError
from samadapt.evaluation.metrics import SampleRecords, intersection_union, iou_of


class SemanticMetrics(SampleRecords):
    """update(pred, target, class_ids, sample_ids=None, ignore=None): binary masks (B, H, W), class ids (B,)."""

    higher_is_better = True
    width = 3  # class id, intersection, union

    def update(self, pred: torch.Tensor, target: torch.Tensor, class_ids: torch.Tensor | Sequence[int],
               sample_ids: Sequence[str] | None = None, ignore: torch.Tensor | None = None) -> None:
        inter, union = intersection_union(pred, target, ignore)
        classes = torch.as_tensor(class_ids, dtype=torch.float64).reshape(-1).to(inter.device)
        if classes.numel() != inter.numel():
            raise ValueError(f"{classes.numel()} class ids for {inter.numel()} samples")
        if (classes < 0).any():
            raise SamAdaptError("semantic metrics need a class id >= 0 on every sample, and this dataset gives "
                                "none: use metrics referring or sod")
        self._add(torch.stack([classes, inter.double(), union.double()], 1), sample_ids)

    def per_class(self) -> dict[int, float]:
        """IoU of each class present (summed I / summed U over the split), by class id."""
        table = self.table()
        out = {}
        for c in sorted({int(c) for c in table[:, 0].tolist()}):
            rows = table[table[:, 0] == c]
            union = rows[:, 2].sum()
            if union > 0:
                out[c] = float(rows[:, 1].sum() / union)
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        table = self.table()
        if len(table) == 0:
            return {"classIoU": torch.tensor(0.0), "objectIoU": torch.tensor(0.0)}
        per_class = self.per_class()
        class_iou = sum(per_class.values()) / len(per_class) if per_class else 1.0
        object_iou = iou_of(table[:, 1], table[:, 2]).mean()
        return {"classIoU": torch.tensor(class_iou, dtype=torch.float32), "objectIoU": object_iou.float()}
