"""W&B offline runs (name, group, tags, config, prediction panels, test summary) and results.json."""

import json
import os
from pathlib import Path

import pytest
import yaml

from samadapt.cli import main
from samadapt.training.cli import SamAdaptCLI, finish_wandb
from samadapt.training.prediction_panel import PredictionPanel
from tests.commands.test_cli import configs, tiny_overrides
from tests.helpers.wandb_records import closed_run_file, config_keys, logged_media, run_record, run_summary


def test_offline_run_is_named_grouped_tagged_with_config_panel_and_test_summary(
        tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the experiment logs to its default_root_dir, runs/demo/shallow_fusion
    args = [*configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
            "--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null"]
    cli = SamAdaptCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    finish_wandb()

    run_file = closed_run_file(tmp_path / "runs/demo/shallow_fusion/wandb")
    run_dir = run_file.parent
    run = run_record(run_file)
    assert run.display_name.startswith("shallow_fusion-shapes-20")  # <method>-<dataset>-<date>
    assert run.run_group == "shapes"
    assert {"shallow_fusion", "prompt:text"} <= set(run.tags)

    assert "config" in config_keys(run_file)  # the whole resolved CLI config
    uploaded = (run_dir / "files" / "config.yaml").read_text()
    assert "method: shallow_fusion" in uploaded and "max_steps: 2" in uploaded

    # the test metrics and costs in the summary equal what results.json records
    summary = run_summary(run_file)
    (results_file,) = (tmp_path / "runs").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert results["metrics"]["testA"]["oIoU"] == pytest.approx(float(summary["test/testA/oIoU"]))
    assert results["metrics"]["all"]["mIoU"] == pytest.approx(float(summary["test/mIoU"]))
    assert int(summary["trainable_params"]) == cli.model.parameter_counts()["trainable_params"] > 0
    assert int(summary["total_params"]) > int(summary["trainable_params"])
    assert float(summary["step_seconds"]) > 0 and float(summary["peak_memory_mb"]) > 0
    assert {"perf/step_seconds", "perf/peak_memory_mb"} <= set(summary)

    # one panel at the first validation: each image with its ground-truth and predicted masks and the prompt
    (panel,) = logged_media(run_file, "val/predictions")
    assert panel["step"] == 2 and panel["count"] == 2  # the eval batch: 2 samples
    assert all(caption.startswith('"') and "IoU" in caption for caption in panel["captions"])
    for masks in panel["all_masks"]:
        assert set(masks) == {"ground_truth", "prediction"}
        assert all((run_dir / "files" / m["path"]).is_file() for m in masks.values())
    assert all((run_dir / "files" / name).is_file() for name in panel["filenames"])


def test_panel_every_n_validations(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=3),
            "--trainer.val_check_interval=1", "--trainer.check_val_every_n_epoch=null"]
    cli = SamAdaptCLI(args=args, run=False)
    (panel_callback,) = [c for c in cli.trainer.callbacks if isinstance(c, PredictionPanel)]  # from base.yaml
    panel_callback.every, panel_callback.num_samples = 2, 1
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finish_wandb()
    run_file = closed_run_file(tmp_path / "runs/demo/shallow_fusion/wandb")
    panels = logged_media(run_file, "val/predictions")
    assert [p["step"] for p in panels] == [1, 3]  # validations after steps 1, 2, 3: the 1st and the 3rd
    assert all(p["count"] == 1 for p in panels)


def test_offline_by_default_online_by_one_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path / "nope")])
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path / "nope")])
    assert os.environ["WANDB_MODE"] == "online"  # the user's choice stands
    # and base.yaml does not pin the logger offline, so wandb.init follows WANDB_MODE
    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "experiments" / "base.yaml").read_text())
    (wandb_logger,) = [lg for lg in base["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger")]
    assert not wandb_logger["init_args"].get("offline", False)
