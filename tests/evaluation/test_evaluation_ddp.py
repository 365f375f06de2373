"""Two CPU processes (DDP, gloo) give exactly the single-process numbers on a split of odd size.

Lightning's DistributedSampler pads 5 samples to 3 + 3: one sample is evaluated on both processes. The
metrics gather every process's per-sample records and keep one record per sample id.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from data_modules import RefCocoDataModule
from tests.conftest import TEST_SIZE
from tests.evaluation.test_evaluation import tiny_module


def run_test(checkpoint, shapes_root, root, devices: int) -> None:
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, eval_batch_size=2,
                           test_splits=["testA", "testB"], max_eval_samples=5)
    strategy = "ddp_fork" if devices > 1 else "auto"  # fork: no re-import of the test session in the children
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(root))
    # the SOD family also carries the referring metrics: both kinds of records cross the processes
    trainer.test(tiny_module(checkpoint, metrics="sod"), dm)


def read_report(root):
    values = {(r["split"], k): v for r in json.loads((root / "test_metrics.json").read_text())["results"]
              for k, v in r.items() if isinstance(v, float)}
    return values, sorted((root / "test_per_sample.csv").read_text().splitlines())


def test_two_processes_equal_one_process(tiny_sam_checkpoint, shapes_root, tmp_path):
    run_test(tiny_sam_checkpoint, shapes_root, tmp_path / "one", devices=1)
    single, single_samples = read_report(tmp_path / "one")
    # The two processes fork from a fresh interpreter: forked from this test session, whose earlier tests
    # started threads (W&B service, thread pools), gloo's first broadcast could hang.
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-m", "tests.evaluation.test_evaluation_ddp", str(tiny_sam_checkpoint),
                             str(shapes_root), str(tmp_path / "two")], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    double, double_samples = read_report(tmp_path / "two")
    assert double_samples == single_samples and len(single_samples) == 1 + 10  # header + 5 per split, ids resolved
    assert set(double) == set(single) and ("all", "oIoU") in single and ("testB", "Sm") in single
    for key, value in single.items():
        if key[1] in ("oIoU", "mIoU") or key[1].startswith("P@"):
            assert double[key] == value, key  # pixel counts: exactly equal
        else:
            assert double[key] == pytest.approx(value, abs=1e-6), key


if __name__ == "__main__":  # the 2-process half of the test, in a fresh interpreter
    run_test(sys.argv[1], sys.argv[2], Path(sys.argv[3]), devices=2)
