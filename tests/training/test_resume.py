"""Exact resume: a training process killed with SIGKILL resumes from last.ckpt and ends bit-identical."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.commands.test_cli import REPO, configs, tiny_overrides
from tests.helpers.step_log import read_steps

SAMADAPT = str(Path(sys.executable).parent / "samadapt")
MAX_STEPS, EVERY = 15, 3  # 24 samples, batch 2: 12 batches per epoch, so the run crosses an epoch boundary


HOSTILE_MODEL = {"train_prompts": {"text": 0.5, "box": 0.3, "points": 0.2}, "ema_decay": 0.9, "ema_warmup": True,
                 "warmup_steps": 4, "scheduler": "cosine"}
HOSTILE_DATA = {"hflip": True, "color_jitter": True, "box_jitter": 0.1}


def resume_config(tmp_path: Path, kill: dict | None, *, steps: int = MAX_STEPS, every: int = EVERY,
                  method_options: dict | None = None, data: dict | None = None, log: Path | None = None,
                  name: str = "") -> str:
    """Trainer settings of the resume tests: last.ckpt every `every` steps, optionally a self-kill callback and
    a log of every step's loss."""
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"save_top_k": 0, "save_last": True, "every_n_train_steps": every}}]
    if log:  # before KillAt: the step that triggers the kill is logged first
        callbacks.append({"class_path": "tests.helpers.step_log.StepLog", "init_args": {"path": str(log)}})
    if kill:
        callbacks.append({"class_path": "tests.helpers.kill.KillAt", "init_args": kill})
    config = {
        "trainer": {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "deterministic": True, "callbacks": callbacks, "max_steps": steps,
                    "val_check_interval": 5 if steps == MAX_STEPS else 50, "check_val_every_n_epoch": None},
        # mixed prompts (the module's prompt-kind generator), dropout (global torch RNG), EMA with warm-up (its
        # decay changes every update, so the update count must survive the resume), lr warm-up + cosine
        "model": {**HOSTILE_MODEL, "method_options": method_options or {"dropout": 0.2}},
        # per-sample randomness in the data: random sentence, flip with left/right swap, colour jitter, box jitter
        "data": {"init_args": data or HOSTILE_DATA},
    }
    path = tmp_path / f"resume{name}_{kill['when'] if kill else 'plain'}{log.stem if log else ''}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def fit(args: list[str], out: Path, config: str, *extra: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [SAMADAPT, "fit", *args, "--config", config, f"--trainer.default_root_dir={out}", *extra]
    proc = subprocess.Popen(cmd, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkill_at_three_points_then_resume_is_bit_identical(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path):
    args = [*configs("demo/shallow_fusion"),
            *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=MAX_STEPS),
            "--trainer.limit_val_batches=1"]
    plain = resume_config(tmp_path, None)
    reference = fit(args, tmp_path / "reference", plain, wait=False)  # uninterrupted, in parallel

    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    # 1. right after the step-3 checkpoint is written
    code, err = fit(args, out, resume_config(tmp_path, {"step": 3, "when": "after_save"}))
    assert code == -9, err[-2000:]
    assert load(last)["global_step"] == 3
    # 2. between checkpoints (step 8; the last one is step 6), resuming mid-epoch from step 3
    code, err = fit(args, out, resume_config(tmp_path, {"step": 8, "when": "mid_interval"}), "--ckpt_path=last")
    assert code == -9, err[-2000:]
    assert load(last)["global_step"] == 6
    # 3. half-way through writing the step-15 checkpoint: the step-12 one (end of epoch 0) must survive intact
    code, err = fit(args, out, resume_config(tmp_path, {"step": 15, "when": "during_save"}), "--ckpt_path=last")
    assert code == -9, err[-2000:]
    assert load(last)["global_step"] == 12
    assert list((out / "checkpoints").glob(".last.ckpt.*.tmp")), "the half-written file should be a temporary one"
    # 4. resume to the end
    code, err = fit(args, out, plain, "--ckpt_path=last")
    assert code == 0, err[-2000:]
    assert "resuming from" in err

    _, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err[-2000:]
    got, want = load(last), load(tmp_path / "reference" / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] == MAX_STEPS
    assert got["state_dict"].keys() == want["state_dict"].keys()
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), f"trainable weight {key} differs after resume"
    assert got["ema_updates"] == want["ema_updates"] == MAX_STEPS
    for key, value in want["ema"].items():
        assert torch.equal(got["ema"][key], value), f"EMA of {key} differs after resume"
    moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in want["optimizer_states"][0]["state"].values()]
    got_moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in got["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(moments, got_moments, strict=True))
    assert got["lr_schedulers"] == want["lr_schedulers"]


# name -> (experiment, extra options, method options). Each resumes a SIGKILL between checkpoints and compares
# every step's loss and the final weights with an uninterrupted run, bit for bit. Measured before the text and
# embedding caches encoded one item per call: the first resumed step's gradients differed in the last bits
# (a string padded next to a longer one, an image encoded in another batch), losses from ~7-26 steps after the
# resume, and after 300 steps the weights by up to 3e-3 (no cache) and 8.5e-3 (cache).
KEYED_DATA = {**HOSTILE_DATA, "color_jitter": False}  # random pixels are never cached: no jitter where it is on
CONFIGS = {
    "shallow_fusion_cached": ("demo/shallow_fusion", ["--model.embedding_cache_mb=64"], {"dropout": 0.2}, KEYED_DATA),
    "shallow_fusion_uncached": ("demo/shallow_fusion", ["--model.embedding_cache_mb=0"], {"dropout": 0.2},
                                HOSTILE_DATA),
    # text inside the encoder: it trains through the whole ViT
    "ldit": ("demo/ldit", [], {"mode": "layerwise", "attention": "global", "token_dropout": 0.1}, HOSTILE_DATA),
}
LONG_STEPS, LONG_EVERY, KILL_STEP = 200, 50, 130  # 24 samples, batch 2: 16 epochs; resumed from step 100


@pytest.mark.parametrize("name", CONFIGS)
def test_sigkill_then_resume_repeats_every_step_over_hundreds_of_steps(name, tiny_sam_checkpoint, shapes_root,
                                                                       tiny_bert, tmp_path):
    experiment, extra, method_options, data = CONFIGS[name]
    args = [*configs(experiment), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=LONG_STEPS),
            "--trainer.limit_val_batches=1", *extra]
    settings = {"steps": LONG_STEPS, "every": LONG_EVERY, "method_options": method_options, "data": data,
                "name": name}
    want_log, got_log = tmp_path / "reference.jsonl", tmp_path / "resumed.jsonl"
    reference = fit(args, tmp_path / "reference", resume_config(tmp_path, None, log=want_log, **settings),
                    wait=False)

    out = tmp_path / "killed"
    kill = {"step": KILL_STEP, "when": "mid_interval"}
    code, err = fit(args, out, resume_config(tmp_path, kill, log=got_log, **settings))
    assert code == -9, err[-2000:]
    code, err = fit(args, out, resume_config(tmp_path, None, log=got_log, **settings), "--ckpt_path=last")
    assert code == 0, err[-2000:]
    assert "resuming from" in err
    if "cached" in name:  # the embedding cache is on and its entries are reused (flipped or not)
        assert ("training images cached per view" in err) == (name == "shallow_fusion_cached")
    _, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err[-2000:]

    want = {r["step"]: r["loss"] for r in read_steps(want_log)}
    records = read_steps(got_log)
    first_try = {r["step"]: r["loss"] for r in records[:KILL_STEP]}
    resumed = [r["step"] for r in records[KILL_STEP:]]
    assert resumed == list(range(100, LONG_STEPS)), "the resumed run should redo the steps after last.ckpt"
    got = {r["step"]: r["loss"] for r in records[KILL_STEP:]}
    assert sorted(want) == list(range(LONG_STEPS))
    differing = [s for s in range(LONG_STEPS) if {**first_try, **got}[s] != want[s]]
    assert not differing, f"loss differs from step {differing[0]} on ({len(differing)} steps)"
    assert all(first_try[s] == got[s] for s in range(100, KILL_STEP))  # the redone steps repeat the first try

    saved = load(out / "checkpoints" / "last.ckpt")
    reference_saved = load(tmp_path / "reference" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == reference_saved["global_step"] == LONG_STEPS
    for key, value in reference_saved["state_dict"].items():
        assert torch.equal(saved["state_dict"][key], value), f"trainable weight {key} differs after resume"
    for key, value in reference_saved["ema"].items():
        assert torch.equal(saved["ema"][key], value), f"EMA of {key} differs after resume"
