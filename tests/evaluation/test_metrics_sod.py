"""SodMetrics against PySODMetrics' own evaluators (the field's reference) and hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import py_sod_metrics as sod
import pytest
import torch

from samadapt.evaluation.sod import SodMetrics, to_uint8


def reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """PySODMetrics used as the COD evaluation scripts use it: step(pred_png, gt_png) per image."""
    mae, sm, wfm, em = sod.MAE(), sod.Smeasure(), sod.WeightedFmeasure(), sod.Emeasure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure is deprecated in favour of FmeasureV2; still the classic one
        fm = sod.Fmeasure()
    for pred, gt in pairs:
        for metric in (mae, sm, wfm, em, fm):
            metric.step(pred, gt)
    e, f = em.get_results()["em"], fm.get_results()["fm"]
    return {"MAE": mae.get_results()["mae"], "Sm": sm.get_results()["sm"], "wFm": wfm.get_results()["wfm"],
            "adpEm": e["adp"], "meanEm": e["curve"].mean(), "maxEm": e["curve"].max(),
            "adpFm": f["adp"], "meanFm": f["curve"].mean(), "maxFm": f["curve"].max()}


def ours(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    metric = SodMetrics()
    for i, (pred, gt) in enumerate(pairs):  # images of different sizes: one update each
        metric.update(torch.from_numpy(pred)[None] / 255.0, torch.from_numpy(gt > 128)[None], [f"img{i}"])
    return {k: v.item() for k, v in metric.compute().items()}


def random_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((h, w), np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    gt[y: y + rng.integers(3, h // 2), x: x + rng.integers(3, w // 2)] = 255
    blur = np.clip(gt * 0.7 + rng.normal(0, 40, (h, w)), 0, 255)  # a noisy, plausible prediction
    return blur.astype(np.uint8), gt


def assert_match(pairs):
    expected, got = reference(pairs), ours(pairs)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-6), key


def test_random_masks_of_different_sizes_match_pysodmetrics():
    rng = np.random.default_rng(0)
    assert_match([random_pair(rng, h, w) for h, w in [(40, 60), (33, 27), (64, 64), (20, 50)]])


def test_empty_full_and_constant_cases_match_pysodmetrics():
    rng = np.random.default_rng(1)
    h, w = 24, 32
    empty, full = np.zeros((h, w), np.uint8), np.full((h, w), 255, np.uint8)
    noisy = rng.integers(0, 256, (h, w)).astype(np.uint8)
    constant = np.full((h, w), 77, np.uint8)
    some = random_pair(rng, h, w)[1]
    assert_match([(noisy, empty), (noisy, full), (constant, some), (constant, empty), (empty, some), (full, full)])


def test_hand_computed_mae_and_perfect_prediction():
    gt = torch.zeros(1, 10, 10, dtype=torch.bool)
    gt[:, :5] = True
    perfect = SodMetrics()
    perfect.update(gt.float(), gt, ["a"])
    out = perfect.compute()
    assert out["MAE"].item() == 0.0 and out["Sm"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["wFm"].item() == pytest.approx(1.0, abs=1e-6) and out["maxFm"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["maxEm"].item() == pytest.approx(100 / 99, abs=1e-6)  # PySODMetrics divides by (H*W - 1)
    # a constant 0.2 map: no min-max stretch possible, MAE = 0.5 * 0.8 + 0.5 * 0.2 (rounded to 8 bits)
    constant = SodMetrics()
    constant.update(torch.full((1, 10, 10), 0.2), gt, ["a"])
    level = round(0.2 * 255) / 255
    assert constant.compute()["MAE"].item() == pytest.approx(0.5 * (1 - level) + 0.5 * level, abs=1e-6)


def test_minmax_off_scores_raw_probabilities():
    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[:, :4] = True
    probs = torch.where(gt, 0.6, 0.1)  # stretched to exactly gt with min-max, not without
    stretched, raw = SodMetrics(), SodMetrics(minmax=False)
    stretched.update(probs, gt)
    raw.update(probs, gt)
    assert stretched.compute()["MAE"].item() == 0.0
    assert raw.compute()["MAE"].item() == pytest.approx(0.5 * (1 - 153 / 255) + 0.5 * 26 / 255, abs=1e-6)


def test_quantisation_and_input_checks():
    assert to_uint8(torch.tensor([0.0, 0.5, 1.0, 0.002])).tolist() == [0, 128, 255, 1]
    assert to_uint8(torch.tensor([3, 200], dtype=torch.uint8)).tolist() == [3, 200]  # already 8-bit
    with pytest.raises(ValueError, match="sigmoid"):
        SodMetrics().update(torch.tensor([[[-1.0, 2.0]]]), torch.ones(1, 1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="differ"):
        SodMetrics().update(torch.rand(1, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool))


def test_padded_duplicate_from_another_process_is_counted_once():
    rng = np.random.default_rng(2)
    pairs = [random_pair(rng, 30, 30) for _ in range(3)]
    rank0, rank1 = SodMetrics(), SodMetrics()
    for i, (pred, gt) in enumerate(pairs):
        (rank0 if i < 2 else rank1).update(torch.from_numpy(pred)[None] / 255.0, torch.from_numpy(gt > 128)[None],
                                           [f"img{i}"])
    pred, gt = pairs[0]  # the sampler's padding: img0 again on rank 1
    rank1.update(torch.from_numpy(pred)[None] / 255.0, torch.from_numpy(gt > 128)[None], ["img0"])
    rank0.merge_state(rank1)
    merged = {k: v.item() for k, v in rank0.compute().items()}
    expected = ours(pairs)
    assert merged == pytest.approx(expected, abs=1e-7)
