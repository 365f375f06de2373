"""Segmentation losses: known values, torchvision focal parity, weights, gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss as tv_focal

from samadapt.errors import SamAdaptError
from samadapt.training.losses import (
    SegmentationLoss,
    bce_loss,
    dice_loss,
    iou_prediction_loss,
    mask_iou,
    sigmoid_focal_loss,
)


def target_and_logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = (torch.rand(3, 1, 8, 8, generator=gen) > 0.5).float()
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    return logits, target


def test_perfect_prediction_costs_almost_nothing():
    _, target = target_and_logits()
    logits = (target * 2 - 1) * 20.0
    assert dice_loss(logits, target).item() < 1e-6
    assert bce_loss(logits, target).item() < 1e-6
    assert sigmoid_focal_loss(logits, target).item() < 1e-6


def test_wrong_prediction_costs_more_than_random():
    logits, target = target_and_logits()
    wrong = (1 - target * 2) * 20.0
    assert dice_loss(wrong, target) > dice_loss(logits, target)
    assert bce_loss(wrong, target) > bce_loss(logits, target)


def test_dice_is_mean_of_per_sample_values():
    logits, target = target_and_logits()
    per_sample = torch.stack([dice_loss(logits[i : i + 1], target[i : i + 1]) for i in range(3)])
    assert torch.allclose(dice_loss(logits, target), per_sample.mean())


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.0)])
def test_focal_matches_torchvision(alpha, gamma):
    logits, target = target_and_logits(1)
    expected = tv_focal(logits, target, alpha=alpha, gamma=gamma, reduction="mean")
    assert torch.allclose(sigmoid_focal_loss(logits, target, alpha, gamma), expected, atol=1e-7)


def test_iou_prediction_loss_uses_actual_iou_and_only_trains_iou_head():
    target = torch.zeros(2, 1, 4, 4)
    target[:, :, :2] = 1  # 8 pixels
    logits = torch.full((2, 1, 4, 4), -5.0, requires_grad=True)
    with torch.no_grad():
        logits[0, :, :1] = 5.0  # predicts 4 of the 8 pixels: IoU 0.5
        logits[1, :, :2] = 5.0  # exact: IoU 1.0
    assert torch.allclose(mask_iou(logits, target), torch.tensor([0.5, 1.0]))
    iou_pred = torch.tensor([[0.5], [0.0]], requires_grad=True)
    loss = iou_prediction_loss(iou_pred, logits, target)
    assert loss.item() == pytest.approx((0.0 + 1.0) / 2)
    loss.backward()
    assert iou_pred.grad is not None and logits.grad is None


def test_segmentation_loss_weights_parts_and_zero_weight_drops_term():
    logits, target = target_and_logits()
    iou_pred = torch.rand(3, 1)
    full = SegmentationLoss({"bce": 1.0, "dice": 0.5, "focal": 20.0, "iou": 1.0})
    total, parts = full(logits, target, iou_pred)
    assert set(parts) == {"bce", "dice", "focal", "iou"}
    expected = parts["bce"] + 0.5 * parts["dice"] + 20.0 * parts["focal"] + parts["iou"]
    assert torch.allclose(total, expected)
    no_focal = SegmentationLoss({"bce": 1.0, "dice": 0.5, "focal": 0.0, "iou": 1.0})
    total2, parts2 = no_focal(logits, target, iou_pred)
    assert "focal" not in parts2
    assert torch.allclose(total2, total - 20.0 * parts["focal"])


def test_segmentation_loss_gradients_flow():
    logits, target = target_and_logits()
    logits.requires_grad_(True)
    iou_pred = torch.rand(3, 1, requires_grad=True)
    total, parts = SegmentationLoss({"bce": 1, "dice": 1, "focal": 1, "iou": 1})(logits, target, iou_pred)
    total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert iou_pred.grad is not None and iou_pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in parts.values())


def test_segmentation_loss_rejects_bad_config():
    with pytest.raises(SamAdaptError, match="Unknown"):
        SegmentationLoss({"bce": 1.0, "lovasz": 1.0})
    with pytest.raises(SamAdaptError):
        SegmentationLoss({"bce": 0.0})
    logits, target = target_and_logits()
    with pytest.raises(ValueError, match="iou_pred"):
        SegmentationLoss({"iou": 1.0})(logits, target)
