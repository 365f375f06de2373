"""Two CPU processes (DDP, gloo) give exactly the single-process numbers on a split of odd size.

Lightning's DistributedSampler pads 5 samples to 3 + 3: one sample is evaluated on both processes. The
metrics gather every process's per-sample records and keep one record per sample id.
"""

import json

import lightning as L
import pytest

from data_modules import RefCocoDataModule
from tests.conftest import TEST_SIZE
from tests.test_evaluation import tiny_module


def run_test(checkpoint, shapes_root, root, devices: int) -> dict:
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, eval_batch_size=2,
                           test_splits=["testA", "testB"], max_eval_samples=5)
    strategy = "ddp_fork" if devices > 1 else "auto"  # fork: no re-import of the test session in the children
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(root))
    # the SOD family also carries the referring metrics: both kinds of records cross the processes
    trainer.test(tiny_module(checkpoint, metrics="sod"), dm)
    values = {(r["split"], k): v for r in json.loads((root / "test_metrics.json").read_text())["results"]
              for k, v in r.items() if isinstance(v, float)}
    return values, sorted((root / "test_per_sample.csv").read_text().splitlines())


def test_two_processes_equal_one_process(tiny_sam_checkpoint, shapes_root, tmp_path):
    single, single_samples = run_test(tiny_sam_checkpoint, shapes_root, tmp_path / "one", devices=1)
    double, double_samples = run_test(tiny_sam_checkpoint, shapes_root, tmp_path / "two", devices=2)
    assert double_samples == single_samples and len(single_samples) == 1 + 10  # header + 5 per split, ids resolved
    assert set(double) == set(single) and ("all", "oIoU") in single and ("testB", "Sm") in single
    for key, value in single.items():
        if key[1] in ("oIoU", "mIoU") or key[1].startswith("P@"):
            assert double[key] == value, key  # pixel counts: exactly equal
        else:
            assert double[key] == pytest.approx(value, abs=1e-6), key
