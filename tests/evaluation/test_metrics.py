"""ReferringMetrics: hand-computed oIoU / mIoU / P@k, threshold conventions, and exact merging."""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from samadapt.errors import SamAdaptError
from samadapt.evaluation.metrics import ReferringMetrics, per_sample_iou, threshold_key


def masks_with(inter: int, pred_only: int, target_only: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, size) pred/target pair with the given pixel counts of overlap and of each side alone."""
    pred = torch.zeros(1, 1, size, dtype=torch.bool)
    target = torch.zeros(1, 1, size, dtype=torch.bool)
    pred[..., : inter + pred_only] = True
    target[..., :inter] = True
    target[..., inter + pred_only : inter + pred_only + target_only] = True
    return pred, target


def batch(*pairs) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])


def test_two_samples_hand_computed():
    # sample A: I=1, U=4 (IoU 0.25); sample B: I=9, U=10 (IoU 0.9)
    pred, target = batch(masks_with(1, 2, 1), masks_with(9, 1, 0))
    metric = ReferringMetrics()
    metric.update(pred, target)
    out = metric.compute()
    assert out["oIoU"].item() == pytest.approx(10 / 14)
    assert out["mIoU"].item() == pytest.approx((0.25 + 0.9) / 2)
    assert out["oIoU"] != out["mIoU"]
    assert set(out) == {"oIoU", "mIoU", "P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9"}
    assert out["P@0.5"].item() == pytest.approx(0.5)
    assert out["P@0.9"].item() == 0.0  # 0.9 is not strictly above 0.9


def test_strict_and_inclusive_at_exact_boundary():
    pred, target = masks_with(1, 1, 0)  # IoU exactly 0.5
    strict, inclusive = ReferringMetrics(strict=True), ReferringMetrics(strict=False)
    strict.update(pred, target)
    inclusive.update(pred, target)
    assert strict.compute()["P@0.5"].item() == 0.0
    assert inclusive.compute()["P@0.5"].item() == 1.0


def test_empty_prediction_of_empty_target_is_iou_one():
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)
    metric = ReferringMetrics()
    metric.update(empty, empty)
    out = metric.compute()
    assert out["mIoU"].item() == 1.0 and out["oIoU"].item() == 1.0 and out["P@0.9"].item() == 1.0
    # it adds nothing to the oIoU sums
    metric.update(*masks_with(1, 3, 0))
    out = metric.compute()
    assert out["oIoU"].item() == pytest.approx(0.25)
    assert out["mIoU"].item() == pytest.approx((1.0 + 0.25) / 2)


def test_missed_target_and_false_alarm_are_zero():
    metric = ReferringMetrics()
    metric.update(*batch(masks_with(0, 0, 5), masks_with(0, 5, 0)))
    out = metric.compute()
    assert out["mIoU"].item() == 0.0 and out["oIoU"].item() == 0.0


def random_samples(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 16, 16, generator=gen) > 0.5, torch.rand(n, 16, 16, generator=gen) > 0.4


def test_several_updates_equal_one_update():
    pred, target = random_samples(10)
    whole, parts = ReferringMetrics(), ReferringMetrics()
    whole.update(pred, target)
    for lo, hi in [(0, 3), (3, 4), (4, 10)]:
        parts.update(pred[lo:hi], target[lo:hi])
    a, b = whole.compute(), parts.compute()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_merged_process_states_equal_one_metric_over_all_samples():
    pred, target = random_samples(9, seed=1)
    everything = ReferringMetrics(thresholds=(0.3, 0.5, 0.75))
    everything.update(pred, target)
    # two "processes" see disjoint, unequal shares; merge_state sums the states like all-reduce
    rank0, rank1 = ReferringMetrics(thresholds=(0.3, 0.5, 0.75)), ReferringMetrics(thresholds=(0.3, 0.5, 0.75))
    rank0.update(pred[:2], target[:2])
    rank1.update(pred[2:], target[2:])
    rank0.merge_state(rank1)
    merged, expected = rank0.compute(), everything.compute()
    assert set(merged) == {"oIoU", "mIoU", "P@0.3", "P@0.5", "P@0.75"}
    assert all(torch.allclose(merged[k], expected[k]) for k in expected)
    # averaging per-process oIoUs would be wrong: the states must be sums
    r0, r1 = ReferringMetrics(), ReferringMetrics()
    r0.update(pred[:2], target[:2])
    r1.update(pred[2:], target[2:])
    mean_of_parts = (r0.compute()["oIoU"] + r1.compute()["oIoU"]) / 2
    assert not torch.allclose(mean_of_parts, expected["oIoU"])


def test_records_are_per_sample_and_split_level_values_are_sums():
    pred, target = random_samples(6, seed=2)
    metric = ReferringMetrics()
    metric.update(pred, target, sample_ids=[f"s{i}" for i in range(6)])
    table = metric.table()
    inter, union, _ = per_sample_iou(pred, target)
    assert table.shape == (6, 2)
    assert sorted(table[:, 0].tolist()) == sorted(inter.double().tolist())
    assert metric.compute()["oIoU"].item() == pytest.approx(inter.sum().item() / union.sum().item())


def test_threshold_keys_and_input_checks():
    assert threshold_key(0.5) == "P@0.5" and threshold_key(0.75) == "P@0.75" and threshold_key(1) == "P@1"
    metric = ReferringMetrics()
    with pytest.raises(TypeError):
        metric.update(torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        metric.update(torch.ones(1, 4, 4, dtype=torch.bool), torch.ones(1, 4, 5, dtype=torch.bool))


def test_no_samples_gives_zeros_and_reset_clears():
    metric = ReferringMetrics()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert metric.compute()["oIoU"].item() == 0.0
    metric.update(*masks_with(2, 0, 0))
    metric.reset()
    metric.update(*masks_with(1, 1, 0))
    assert metric.compute()["mIoU"].item() == pytest.approx(0.5)


def test_sample_evaluated_twice_in_one_process_is_an_error_and_reset_forgets():
    pred, target = masks_with(1, 1, 0)
    metric = ReferringMetrics()
    metric.update(pred, target, ["ref1_s1"])
    with pytest.raises(SamAdaptError, match="ref1_s1"):
        metric.update(pred, target, ["ref1_s1"])
    metric.reset()
    metric.update(pred, target, ["ref1_s1"])  # a new evaluation round


def test_ignore_pixels_count_for_neither_side():
    pred, target = masks_with(2, 2, 0)
    ignore = torch.zeros_like(pred)
    ignore[..., 2:4] = True
    metric = ReferringMetrics()
    metric.update(pred, target, ignore=ignore)
    assert metric.compute()["mIoU"].item() == 1.0


def _two_process_worker(rank: int, init_file: str, result_file: str, share: str) -> None:
    torch.set_num_threads(1)  # stay out of the parent's OpenMP pool after fork
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        pred, target = random_samples(7, seed=3)
        ids = [f"s{i}" for i in range(7)]
        if share == "unequal":  # unequal shares, as at the end of a split
            mine = range(0, 2) if rank == 0 else range(2, 7)
        elif share == "padded":  # DistributedSampler: 7 samples -> 4 each, rank 1 repeats sample 0
            mine = [0, 2, 4, 6] if rank == 0 else [1, 3, 5, 0]
        else:  # "empty": rank 1 gets nothing at all
            mine = range(7) if rank == 0 else []
        metric = ReferringMetrics()
        for i in mine:
            metric.update(pred[i:i + 1], target[i:i + 1], [ids[i]])
        out = metric.compute()  # gathers the records of both processes
        if rank == 0:
            torch.save(out, result_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("share", ["unequal", "padded", "empty"])
def test_all_reduce_over_two_processes_is_exact(tmp_path, share):
    result_file = str(tmp_path / "result.pt")
    # fork: spawn would cost ~10 s of imports in the children; the deadline turns a hang into a failure.
    context = mp.start_processes(
        _two_process_worker, args=(str(tmp_path / "init"), result_file, share), nprocs=2, join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):  # join() returns True once every process has ended
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("two-process metric sync did not finish within 120 s")
    synced = torch.load(result_file, weights_only=True)
    single = ReferringMetrics()
    single.update(*random_samples(7, seed=3))
    expected = single.compute()
    assert all(torch.equal(synced[k], expected[k]) for k in expected)
