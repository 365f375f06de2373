"""Camouflaged / salient object metrics (MAE, S-measure, E-measure, weighted F, F-measure) via PySODMetrics.

PySODMetrics (`py_sod_metrics`) is the field's reference implementation; each image is scored by it exactly
as the field's evaluation scripts score a saved 8-bit PNG: the probability map is rounded to 0..255 and
min-max normalised (`minmax=True`, MATLAB's mapminmax), the ground truth is `> 128` of a 0/255 mask.
Scores are kept per image (one record each, keyed by sample id) and averaged over the split in `compute()`,
as PySODMetrics' `get_results()` does, so the numbers match a folder evaluation of the same PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import py_sod_metrics as sod
import torch
from py_sod_metrics.utils import prepare_data

from samadapt.evaluation.metrics import SampleRecords

CURVE = 256  # PySODMetrics' dynamic curves: one value per threshold 0..255
SCALARS = ("MAE", "Sm", "wFm", "adpEm", "adpFm")


def to_uint8(probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> the 8-bit map a PNG would hold (round to nearest); uint8 input is kept as is."""
    array = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def sod_scores(pred_u8: np.ndarray, gt_u8: np.ndarray, minmax: bool = True) -> np.ndarray:
    """One image's row: MAE, Sm, wFm, adpEm, adpFm, the 256-value E-measure curve, the 256-value F curve.

    pred_u8: (H, W) uint8 probability map (0..255); gt_u8: (H, W) uint8, foreground where > 128.
    """
    if pred_u8.shape != gt_u8.shape:
        raise ValueError(f"prediction {pred_u8.shape} and ground truth {gt_u8.shape} differ in size")
    if minmax:
        pred, gt = prepare_data(pred_u8, gt_u8)
    else:  # raw probabilities (rounded to 8 bits), no stretching
        pred, gt = pred_u8 / 255.0, gt_u8 > 128
    mae, sm, wfm, em = sod.MAE(), sod.Smeasure(alpha=0.5), sod.WeightedFmeasure(beta=1), sod.Emeasure()
    fm = sod.FmeasureV2({"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})
    for metric in (mae, sm, wfm, em, fm):
        metric.step(pred, gt, normalize=False)
    fm_results = fm.get_results()["fm"]
    return np.concatenate([
        [mae.maes[0], sm.sms[0], wfm.weighted_fms[0], em.adaptive_ems[0], fm_results["adaptive"]],
        em.changeable_ems[0], fm_results["dynamic"],
    ]).astype(np.float64)


class SodMetrics(SampleRecords):
    """MAE (on probabilities), S-measure (alpha 0.5), E-measure (mean / max / adaptive), weighted F (beta 1),
    F-measure (beta^2 0.3: max / mean / adaptive), each averaged over images as PySODMetrics does.

    update(probs, target, sample_ids=None): probs (B, H, W) floats in [0, 1] (or uint8 0..255), target (B, H, W)
    binary. Images of different sizes: one update per image.
    """

    width = len(SCALARS) + 2 * CURVE

    def __init__(self, minmax: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.minmax = minmax

    def update(self, probs: torch.Tensor, target: torch.Tensor, sample_ids: Sequence[str] | None = None,
               ignore: torch.Tensor | None = None) -> None:
        """`ignore` is accepted for a uniform interface and not used: structure measures have no ignore region."""
        if probs.shape != target.shape:
            raise ValueError(f"probs and target shapes differ: {tuple(probs.shape)} vs {tuple(target.shape)}")
        if probs.dtype.is_floating_point and (probs.min() < 0 or probs.max() > 1):
            raise ValueError("SodMetrics takes probabilities in [0, 1]; apply a sigmoid to logits first")
        preds = to_uint8(probs)
        gts = target.detach().bool().cpu().numpy().astype(np.uint8) * 255
        rows = [sod_scores(p, g, self.minmax) for p, g in zip(preds, gts, strict=True)]
        self._add(torch.from_numpy(np.stack(rows)), sample_ids)

    def compute(self) -> dict[str, torch.Tensor]:
        table = self.table()
        if len(table) == 0:
            return {k: torch.tensor(0.0) for k in (*SCALARS, "meanEm", "maxEm", "meanFm", "maxFm")}
        mean = table.mean(0)
        out = dict(zip(SCALARS, mean[: len(SCALARS)], strict=True))
        em_curve = mean[len(SCALARS): len(SCALARS) + CURVE]
        fm_curve = mean[len(SCALARS) + CURVE:]
        out.update(meanEm=em_curve.mean(), maxEm=em_curve.max(), meanFm=fm_curve.mean(), maxFm=fm_curve.max())
        return {k: v.float() for k, v in out.items()}
