"""Lightning's conventions for one run: everything under --trainer.default_root_dir, one last.ckpt, test numbers
at the end of fit."""

import json

import pytest
import yaml

from samadapt.cli import main
from tests.commands.test_cli import REPO, configs, tiny_overrides


def checkpoints_every_two_steps(tmp_path):
    """base.yaml's callbacks with the every-100-steps checkpoint made every 2 steps, so both write last.ckpt."""
    callbacks = yaml.safe_load((REPO / "experiments/base.yaml").read_text())["trainer"]["callbacks"]
    for callback in callbacks:
        if callback.get("init_args", {}).get("every_n_train_steps"):
            callback["init_args"]["every_n_train_steps"] = 2
    path = tmp_path / "every_two_steps.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["--config", str(path)]


def test_a_run_lives_under_default_root_dir_with_one_last_ckpt_and_its_test_numbers(
        tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *configs("demo/shallow_fusion"), *checkpoints_every_two_steps(tmp_path),
          *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=4),
          "--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null",
          "--trainer.default_root_dir=mine"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["every_two_steps.yaml", "mine"]  # no ./runs
    run = tmp_path / "mine" / "samadapt" / "version_0"
    for name in ("metrics.csv", "config.yaml", "test_metrics.json", "test_per_sample.csv", "results.json"):
        assert (run / name).is_file(), name
    assert list((tmp_path / "mine" / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("last")) == ["last.ckpt"]
    results = json.loads((run / "results.json").read_text())
    assert "testA" in results["metrics"]
    tested = tmp_path / results["checkpoint"]  # tested on the best checkpoint of this run
    assert tested.parent == run / "checkpoints" and tested.name.startswith("best-")
    assert tmp_path / results["trained_run"] == run
    assert len(list((tmp_path / "mine" / "samadapt").iterdir())) == 1  # fit and test: one version folder


def test_the_demo_experiments_default_root_dir_holds_their_runs(tiny_sam_checkpoint, shapes_root, tiny_bert,
                                                                tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
            "--trainer.logger.class_path=samadapt.training.csv_logger.CSVLogger"]
    main(["fit", *args, "--test_after_fit=false"])
    run = tmp_path / "runs" / "demo" / "shallow_fusion"  # the experiment file's default_root_dir
    assert next(run.rglob("metrics.csv")) and next(run.rglob("last.ckpt"))
    assert not list(run.rglob("test_metrics.json"))
    main(["test", *args, f"--ckpt_path={next(run.rglob('last.ckpt'))}"])  # `test` on its own names the trained run
    results = json.loads(next(run.rglob("results.json")).read_text())
    assert results["trained_run"] == str(run / "samadapt" / "version_0")


def test_unreadable_test_splits_stop_before_training(tiny_sam_checkpoint, tiny_layouts, tiny_bert, tmp_path,
                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tiny_layouts["data_modules.FolderDataModule"]  # train and val only
    args = [*configs("folder/decoder_only"), *tiny_overrides(tiny_sam_checkpoint, "", tiny_bert, data_root=root),
            "--trainer.logger=false", "--data.init_args.test_splits=[test]"]
    with pytest.raises(SystemExit):
        main(["fit", *args])
    assert "--test_after_fit=false" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing trained


def test_resuming_continues_the_same_version_folder_and_wandb_run(tiny_sam_checkpoint, shapes_root, tiny_bert,
                                                                  tmp_path, monkeypatch, capsys):
    """fit 4 steps, then `--ckpt_path last` to 8: one version folder, one W&B run id, and one training curve in
    metrics.csv (every step's loss once, the first run's rows kept)."""
    import csv

    import torch

    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), *checkpoints_every_two_steps(tmp_path),
            "--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null",
            "--trainer.default_root_dir=mine", "--test_after_fit=false", "--trainer.log_every_n_steps=1"]
    main(["fit", *args, *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=4)])
    run = tmp_path / "mine" / "samadapt" / "version_0"
    first_id = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["samadapt_run_identity"][1][1]
    main(["fit", *args, *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=8), "--ckpt_path=last"])
    assert "continuing" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine" / "samadapt").iterdir()] == ["version_0"]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 8
    assert saved["samadapt_run_identity"] == [["CSVLogger", 0], ["WandbLogger", first_id]]
    runs = {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "mine" / "wandb").glob("offline-run-*")}
    assert runs == {first_id}  # both W&B folders belong to one run id
    with (run / "metrics.csv").open(newline="") as file:
        steps = [int(float(r["step"])) for r in csv.DictReader(file) if r.get("train/loss_step", r.get("train/loss"))]
    assert steps == sorted(set(steps)) and len(steps) == 8, steps
