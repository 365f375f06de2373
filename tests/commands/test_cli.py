"""The command contract: every experiment file runs, overrides work, missing things end in one clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samadapt.cli import main
from samadapt.methods import METHODS

REPO = Path(__file__).resolve().parents[2]
# every experiment, <dataset>/<method>, and every ablation, <dataset>/<method>/<ablation>
EXPERIMENTS = sorted(str(p.relative_to(REPO / "experiments").with_suffix(""))
                     for p in (REPO / "experiments").glob("*/**/*.yaml"))


REFCOCO_DATA = "data_modules.RefCocoDataModule"


def experiment_files(name):
    """base.yaml, the experiment file and, for an ablation (refcoco/ldit/frozen), its experiment file before it."""
    path = REPO / "experiments" / f"{name}.yaml"
    parent = path.parent.with_suffix(".yaml")
    return [REPO / "experiments/base.yaml", *([parent] if parent.is_file() else []), path]


def section(name, part):
    """The experiment's `part` (model, data) section, later files' keys replacing earlier ones."""
    merged = {}
    for path in experiment_files(name):
        merged.update((yaml.safe_load(path.read_text()) or {}).get(part) or {})
    return merged


def data_class_path(name):
    """The experiment's data.class_path (base.yaml's RefCOCO DataModule unless the experiment names another)."""
    return section(name, "data").get("class_path", REFCOCO_DATA)


def model_setting(name, key):
    """The experiment's model.<key> (base.yaml's unless the experiment sets it)."""
    return section(name, "model").get(key)


def tiny_overrides(checkpoint, shapes_root, bert, steps=2, data_root=None, clip=None):
    """Shrink any experiment to the tiny SAM and tiny data; `data_root` for DataModules other than RefCOCO's.

    `clip` (model_cfg, weights) replaces the tiny BERT for experiments whose text encoder is CLIP.
    """
    text = ([f"--model.text_options.model_cfg={json.dumps(clip[0])}", f"--model.text_options.pretrained={clip[1]}"]
            if clip else [f"--model.text_options.name_or_path={bert}"])
    common = [
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.accelerator=cpu", "--trainer.log_every_n_steps=1",
        "--model.sam_variant=tiny", f"--model.sam_checkpoint={checkpoint}", "--model.image_size=64", *text,
        "--data.init_args.image_size=64", "--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=2",
        "--data.init_args.num_workers=0", "--data.init_args.max_eval_samples=4",
    ]
    if data_root is not None:
        return [*common, f"--data.init_args.root={data_root}"]
    return [*common, f"--data.init_args.root={shapes_root}", "--data.init_args.dataset=shapes",
            "--data.init_args.split_by=unc", "--data.init_args.test_splits=[testA]"]


def configs(name):
    return [arg for path in experiment_files(name) for arg in ("--config", str(path))]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_two_steps(experiment, tiny_sam_checkpoint, shapes_root, tiny_bert, tiny_clip,
                                         tiny_layouts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # base.yaml logs to ./runs
    class_path = data_class_path(experiment)
    data_root = None if class_path == REFCOCO_DATA else tiny_layouts[class_path]
    clip = tiny_clip if model_setting(experiment, "text_encoder") == "clip" else None
    overrides = tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, data_root=data_root, clip=clip)
    if any("random_long_side" in path.read_text() for path in experiment_files(experiment)):
        overrides.append("--data.init_args.random_long_side=[64,56,48]")  # DIT's 512..320 scaled to the tiny frame
    if not METHODS[model_setting(experiment, "method")].needs_training:  # a pipeline: evaluated, never fitted
        main(["validate", *configs(experiment), *overrides])
        assert "val/oIoU" in next((tmp_path / "runs").rglob("metrics.csv")).read_text()
        return
    main(["fit", *configs(experiment), *overrides,
          "--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null",
          "--model.global_batch_size=null", "--test_after_fit=false"])  # test: tests/training/test_run_folder.py
    checkpoints = list((tmp_path / "runs").rglob("last.ckpt"))
    assert len(checkpoints) == 1
    metrics = (next((tmp_path / "runs").rglob("metrics.csv"))).read_text()
    assert "val/oIoU" in metrics and "train/loss" in metrics
    root = section(experiment, "trainer").get("default_root_dir", "runs")  # the W&B run is there to sync, in the
    assert list((tmp_path / root / "wandb").glob("offline-run-*"))        # experiment's default_root_dir


def test_fit_then_test_from_checkpoint_with_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
            "--model.lr=0.003", "--model.method_options.dropout=0.25", "--trainer.logger=false",
            "--trainer.default_root_dir=out"]
    main(["fit", *args])
    saved = yaml.safe_load(next((tmp_path / "out").rglob("config.yaml")).read_text())
    assert saved["model"]["lr"] == 0.003 and saved["model"]["method_options"]["dropout"] == 0.25
    ckpt = next((tmp_path / "out").rglob("last.ckpt"))
    assert ckpt.stat().st_size < 5_000_000  # trainable weights only, not the frozen SAM and text encoder
    main(["test", *args, f"--ckpt_path={ckpt}"])
    report = json.loads((tmp_path / "out" / "test_metrics.json").read_text())  # the run folder's test report
    assert report["results"][0]["split"] == "testA" and report["settings"]["eval_resolution"] == "original"


def run_shell(*args, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_make_train_without_data_or_checkpoint_is_one_clear_message(tmp_path):
    """`make train EXP=refcoco/shallow_fusion` on a machine with neither RefCOCO nor the ViT-B checkpoint."""
    work = tmp_path / "fresh"
    work.mkdir()
    (work / "experiments").symlink_to(REPO / "experiments")
    samadapt = Path(sys.executable).parent / "samadapt"
    result = run_shell(str(samadapt), "fit", "--config", "experiments/base.yaml", "--config",
                       "experiments/refcoco/shallow_fusion.yaml", cwd=work)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("samadapt: error:")]
    assert len(error_lines) == 1
    assert "checkpoints/sam_vit_b_01ec64.pth" in error_lines[0] and "Download" in error_lines[0]


def test_missing_data_is_one_clear_message(tiny_sam_checkpoint, tmp_path, monkeypatch, capsys, tiny_bert):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs("refcoco/shallow_fusion"), "--model.sam_variant=tiny",
              f"--model.sam_checkpoint={tiny_sam_checkpoint}", "--model.image_size=64",
              f"--model.text_options.name_or_path={tiny_bert}", "--trainer.logger=false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data/refcoco" in err and "not found" in err


def test_make_train_unknown_experiment_is_clear():
    venv = Path(sys.executable).parent.parent
    result = run_shell("make", "--no-print-directory", "train", "EXP=nope", f"VENV={venv}")
    assert result.returncode != 0 and "experiments/nope.yaml" in result.stderr
    assert "refcoco/ldit" in result.stderr  # the choices, found in the dataset folders
    result = run_shell("make", "--no-print-directory", "train", "EXP=refcoco/ldit", "ABL=nope", f"VENV={venv}")
    assert result.returncode != 0 and "experiments/refcoco/ldit/nope.yaml" in result.stderr
    assert "frozen" in result.stderr  # the ablations there are


def test_image_size_is_stated_once_in_the_model(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch,
                                                capsys):
    """The DataModule letterboxes to the model's size (null: the variant's own); another data size is an error."""
    from samadapt.commands.inspect_data import data_config
    from samadapt.training.cli import SamAdaptCLI

    monkeypatch.chdir(tmp_path)
    args = [*configs("demo/shallow_fusion"), f"--model.sam_checkpoint={tiny_sam_checkpoint}",
            f"--model.text_options.name_or_path={tiny_bert}", f"--data.init_args.root={shapes_root}",
            "--trainer.logger=false"]
    for size, expected in (("64", 64), ("null", 128)):  # 128: the tiny SAM's own size
        cli = SamAdaptCLI(args=[*args, f"--model.image_size={size}"], run=False)
        assert cli.datamodule.hparams.image_size == cli.model.model.image_size == expected
    assert data_config([str(p) for p in experiment_files("refcoco/ldit")], [])["init_args"]["image_size"] == 512
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--model.image_size=64", "--data.init_args.image_size=32"])
    assert exit_info.value.code == 2
    assert "data.init_args.image_size 32 (the command line) differs from the model's input size 64" in \
        capsys.readouterr().err
