"""Two processes on the CPU (gloo): the demo's L-DIT trains under plain strategy=ddp with a prompt mix that leaves
some trainable parameters unused in some batches, and its validation equals a single-process run on the same
weights (every validation sample counted once: 5 samples over 2 ranks)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samadapt.cli import main
from tests.commands.test_cli import REPO, configs, tiny_overrides

SAMADAPT = str(Path(sys.executable).parent / "samadapt")


def val_metrics(metrics_csv: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/oIoU")]
    assert rows, f"no validation row in {metrics_csv}"
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def test_ddp_two_cpu_processes_train_and_validate_like_one(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                           monkeypatch):
    settings = tmp_path / "ddp.yaml"
    settings.write_text(yaml.safe_dump({
        "trainer": {"enable_progress_bar": False, "enable_model_summary": False,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": str(tmp_path / "logs"), "name": "ddp"}}],
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_top_k": 0,
                                                 "save_last": True}}]},
        # text-less samples leave the text projections unused; box-less ones the decoder's box path
        "model": {"train_prompts": {"text": 0.4, "box": 0.3, "points": 0.3}},
    }))
    common = [*configs("demo/ldit"), "--config", str(settings),
              *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=3),
              "--trainer.val_check_interval=3", "--trainer.check_val_every_n_epoch=null",
              "--trainer.limit_val_batches=1.0", "--data.init_args.max_eval_samples=5",
              "--model.eval_resolution=original"]  # fit would validate at model resolution, validate at original
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([SAMADAPT, "fit", *common, "--trainer.devices=2", "--trainer.strategy=ddp"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr  # really two processes
    ddp = val_metrics(next((tmp_path / "logs" / "ddp").rglob("metrics.csv")))

    monkeypatch.chdir(tmp_path)
    single_logs = ["--trainer.logger.init_args.name=single"]
    main(["validate", *common, *single_logs, f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}"])
    single = val_metrics(next((tmp_path / "logs" / "single").rglob("metrics.csv")))
    assert ddp.keys() == single.keys() and "val/oIoU" in ddp
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, abs=1e-6), key
