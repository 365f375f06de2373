"""Segmentation losses on mask logits: BCE, soft dice, sigmoid focal, IoU-prediction; and their weighted sum."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from samadapt.errors import SamAdaptError


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over all pixels. target in {0, 1} (or soft in [0, 1])."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss on sigmoid(logits): 1 - (2|P.T| + eps) / (|P| + |T| + eps) per sample, then mean.

    Shapes (B, ...). eps smooths the ratio and makes an empty prediction of an empty target cost 0.
    """
    prob = torch.sigmoid(logits).flatten(1)
    target = target.to(prob.dtype).flatten(1)
    inter = (prob * target).sum(1)
    total = prob.sum(1) + target.sum(1)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def sigmoid_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on logits, mean over all pixels; alpha < 0 disables class weighting."""
    target = target.to(logits.dtype)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = prob * target + (1.0 - prob) * (1.0 - target)
    loss = ce * (1.0 - p_true) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss.mean()


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU (B,) of (logits > 0) against (target > 0.5), no gradient; empty vs empty = 1."""
    with torch.no_grad():
        pred = (logits > 0).flatten(1)
        gt = (target > 0.5).flatten(1)
        inter = (pred & gt).sum(1).float()
        union = (pred | gt).sum(1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def iou_prediction_loss(iou_pred: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between SAM's predicted IoU (B,) or (B, 1) and the actual IoU of the binarised mask.

    The actual IoU is a detached target: only iou_pred receives gradient.
    """
    actual = mask_iou(logits, target).to(iou_pred.dtype)
    return F.mse_loss(iou_pred.reshape(-1), actual.reshape(-1))


LOSS_TERMS = ("bce", "dice", "focal", "iou")


class SegmentationLoss(nn.Module):
    """Weighted sum of the loss terms named in `weights` (keys among bce, dice, focal, iou).

    forward(logits, target, iou_pred=None) -> (total, parts), where parts maps each term with a
    non-zero weight to its unweighted, detached value (for logging). Zero-weight terms are not
    computed. The "iou" term needs iou_pred.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        dice_eps: float = 1.0,
    ):
        super().__init__()
        weights = dict({"bce": 1.0, "dice": 1.0} if weights is None else weights)
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise SamAdaptError(f"Unknown loss terms {unknown}; choose among {list(LOSS_TERMS)}.")
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise SamAdaptError(f"Loss weights must be >= 0, got {negative}.")
        self.weights = {k: float(v) for k, v in weights.items() if v != 0}
        if not self.weights:
            raise SamAdaptError("All loss weights are zero: nothing to train.")
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.dice_eps = dice_eps

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if logits.shape != target.shape:
            raise ValueError(f"logits and target shapes differ: {tuple(logits.shape)} vs {tuple(target.shape)}")
        terms: dict[str, torch.Tensor] = {}
        for name in self.weights:
            if name == "bce":
                terms[name] = bce_loss(logits, target)
            elif name == "dice":
                terms[name] = dice_loss(logits, target, eps=self.dice_eps)
            elif name == "focal":
                terms[name] = sigmoid_focal_loss(logits, target, self.focal_alpha, self.focal_gamma)
            else:
                if iou_pred is None:
                    raise ValueError("the 'iou' loss term needs iou_pred")
                terms[name] = iou_prediction_loss(iou_pred, logits, target)
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
