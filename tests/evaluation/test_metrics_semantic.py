"""SemanticMetrics: dataset-level per-class IoU versus per-object mIoU, by hand, with ignore pixels."""

import pytest
import torch

from samadapt.errors import SamAdaptError
from samadapt.evaluation.semantic import SemanticMetrics


def line(inter: int, pred_only: int, target_only: int, size: int = 32):
    pred = torch.zeros(1, size, dtype=torch.bool)
    target = torch.zeros(1, size, dtype=torch.bool)
    pred[:, : inter + pred_only] = True
    target[:, :inter] = True
    target[:, inter + pred_only: inter + pred_only + target_only] = True
    return pred, target


def test_class_iou_sums_over_the_split_object_iou_averages_samples():
    metric = SemanticMetrics()
    # class 3: a big object (I=18, U=20) and a small one (I=0, U=2); class 7: one object I=1, U=4
    for sid, cls, counts in [("a", 3, (18, 2, 0)), ("b", 3, (0, 0, 2)), ("c", 7, (1, 3, 0))]:
        pred, target = line(*counts)
        metric.update(pred, target, [cls], [sid])
    out = metric.compute()
    assert metric.per_class() == {3: pytest.approx(18 / 22), 7: pytest.approx(0.25)}
    assert out["classIoU"].item() == pytest.approx((18 / 22 + 0.25) / 2)
    assert out["objectIoU"].item() == pytest.approx((0.9 + 0.0 + 0.25) / 3)


def test_ignore_pixels_count_for_neither_side():
    pred, target = line(4, 4, 0)  # IoU 0.5 ...
    ignore = torch.zeros_like(pred)
    ignore[:, 4:8] = True  # ... but the false positives lie in the ignore region
    metric = SemanticMetrics()
    metric.update(pred, target, [1], ["x"], ignore=ignore)
    assert metric.compute()["classIoU"].item() == 1.0


def test_missing_class_id_is_an_error():
    pred, target = line(1, 0, 0)
    with pytest.raises(SamAdaptError, match="class id"):
        SemanticMetrics().update(pred, target, [-1])
