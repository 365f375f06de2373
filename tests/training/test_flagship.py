"""`make train EXP=refcoco/ldit`: the command users name first, through make, from the shell."""

import os
import subprocess
import sys
from pathlib import Path

from tests.commands.test_cli import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def make(*args, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run(["make", "--no-print-directory", f"VENV={VENV}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_ldit_refcoco_without_data_or_checkpoint_is_one_clear_message(tmp_path):
    work = tmp_path / "fresh"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", "experiments", "scripts"):
        (work / name).symlink_to(REPO / name)
    (work / ".venv").symlink_to(VENV)
    result = make("train", "EXP=ldit_refcoco", cwd=work)  # the old flat name still works for one release
    assert "EXP=ldit_refcoco is now EXP=refcoco/ldit" in result.stderr
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("samadapt: error:")]
    assert len(errors) == 1 and "checkpoints/sam_vit_b_01ec64.pth" in errors[0], result.stderr[-2000:]


def test_ldit_refcoco_trains_and_evaluates_on_the_demo_stand_ins(tiny_sam_checkpoint, shapes_root, tiny_bert,
                                                                 tmp_path):
    overrides = " ".join([
        *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert), "--data.init_args.random_long_side=[64,56,48]",
        "--model.global_batch_size=4", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
        "--data.init_args.test_splits=[val,testA,testB]",
    ])
    trained = make("train", "EXP=refcoco/ldit", f"ARGS={overrides}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    evaluated = make("eval", "EXP=refcoco/ldit", f"CKPT={checkpoint}", f"ARGS={overrides}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    for split in ("val", "testA", "testB"):  # one test run reports every split
        assert f"test/{split}/oIoU" in evaluated.stdout
