"""Atomic checkpoints, the non-finite loss guard, the resumable sampler's contract, and checkpoints given to a run."""

import itertools
import os
import random
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from data_modules import RefCocoDataModule
from data_modules.pipeline.resumable import ResumableSampler
from samadapt.cli import main
from samadapt.training.checkpoint_io import AtomicCheckpointIO
from samadapt.training.module import SamAdaptModule
from samadapt.training.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from tests.commands.test_cli import configs, tiny_overrides
from tests.conftest import TEST_SIZE


def tiny_module(checkpoint) -> SamAdaptModule:
    return SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=TEST_SIZE, eval_prompts="none", lr=1e-3)


def tiny_data(shapes_root) -> RefCocoDataModule:
    return RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=2, eval_batch_size=2,
                             test_splits=["testA"], max_eval_samples=2)


def trainer(tmp_path, *callbacks, steps=5) -> L.Trainer:
    return L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                     plugins=[AtomicCheckpointIO()], callbacks=list(callbacks))


def nan_at(module: SamAdaptModule, steps: set[int]) -> None:
    """Make the loss NaN at the given global steps (a stand-in for an exploding run or a poisoned batch)."""
    step_loss = module.step_loss

    def poisoned(batch, kinds):
        loss, parts = step_loss(batch, kinds)
        return (loss * float("nan") if module.trainer.global_step in steps else loss), parts

    module.step_loss = poisoned


def test_crash_during_checkpoint_save_keeps_the_previous_one(tiny_sam_checkpoint, tmp_path, monkeypatch):
    module = tiny_module(tiny_sam_checkpoint)
    t = trainer(tmp_path, steps=0)
    t.strategy.connect(module)
    path = tmp_path / "last.ckpt"
    t.save_checkpoint(path)
    before = path.read_bytes()

    real_save = torch.save

    def half_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.flush()  # samadapt.io.atomic_torch_save hands torch an open file
        f.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with torch.no_grad():
        module.model.sam.mask_decoder.iou_token.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        t.save_checkpoint(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    torch.load(path, weights_only=True)


def test_nonfinite_loss_stops_naming_step_and_samples_and_keeps_last_checkpoint(tiny_sam_checkpoint, shapes_root,
                                                                              tmp_path):
    module = tiny_module(tiny_sam_checkpoint)
    nan_at(module, {3})
    every_3 = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=0, save_last=True, every_n_train_steps=3)
    t = trainer(tmp_path, every_3, NonFiniteLossGuard("stop"))
    with pytest.raises(NonFiniteLossError) as err:
        t.fit(module, tiny_data(shapes_root))
    message = str(err.value)
    assert "loss is NaN at step 3" in message and "samples " in message and "action: skip" in message
    assert "last.ckpt" in message
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3  # written right before the bad step
    weight = module.model.sam.mask_decoder.iou_token.weight  # the bad step never reached the weights
    assert torch.isfinite(weight).all()
    assert torch.equal(saved["state_dict"]["model.sam.mask_decoder.iou_token.weight"], weight.detach())


def test_nonfinite_loss_skip_drops_the_step_and_counts_it(tiny_sam_checkpoint, shapes_root, tmp_path):
    module = tiny_module(tiny_sam_checkpoint)
    nan_at(module, {1, 3})
    guard = NonFiniteLossGuard("skip")
    t = trainer(tmp_path, guard, steps=5)
    t.fit(module, tiny_data(shapes_root))
    assert guard.skipped == 2
    assert t.callback_metrics["train/nonfinite_skipped"] == 2
    assert all(torch.isfinite(p).all() for p in module.parameters() if p.requires_grad)
    adam_steps = {int(s["step"]) for s in t.optimizers[0].state.values()}
    assert adam_steps == {3}  # 5 batches, 2 skipped: Adam's moments saw only the 3 good ones


def test_resumable_sampler_order_is_seeded_sharded_and_skips():
    full = list(ResumableSampler(10, seed=7))
    assert sorted(i for i, _ in full) == list(range(10))
    assert full == list(ResumableSampler(10, seed=7))  # same seed and epoch: same order and sample seeds
    other_epoch = ResumableSampler(10, seed=7)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != full
    resumed = ResumableSampler(10, seed=7)
    resumed.skip_samples(4)
    assert list(resumed) == full[4:]
    shards = [list(ResumableSampler(10, seed=7, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(s) == 4 for s in shards) and {i for s in shards for i, _ in s} == set(range(10))


def test_grouped_order_keeps_each_image_together_shuffled_and_resumable():
    groups = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9]]
    full = [i for i, _ in ResumableSampler(10, seed=7, groups=groups)]
    assert sorted(full) == list(range(10))
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    changes = sum(group_of[a] != group_of[b] for a, b in itertools.pairwise(full))
    assert changes == len(groups) - 1  # each image's samples come in one run
    other = ResumableSampler(10, seed=7, groups=groups)
    other.set_epoch(1)
    assert [i for i, _ in other] != full  # groups and members reshuffled each epoch
    resumed = ResumableSampler(10, seed=7, groups=groups)
    resumed.skip_samples(4)
    assert [i for i, _ in resumed] == full[4:]


def test_group_by_image_batches_share_a_scene(shapes_root):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=4, group_by_image=True)
    dm.setup("fit")
    images = [t.image for t in dm.train_set.targets]
    order = [i for i, _ in dm.train_dataloader().sampler]
    changes = sum(images[a] != images[b] for a, b in itertools.pairwise(order))
    assert changes == len(set(images)) - 1  # every scene's referents in a row


def _batches(loader, count=None):
    out = []
    for batch in loader:
        out.append((batch["sample_id"], batch["image"], batch["box"], batch["text"]))
        if count is not None and len(out) == count:
            break
    return out


def _same(a, b) -> bool:
    return all(x[0] == y[0] and x[3] == y[3] and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2])
               for x, y in zip(a, b, strict=True))


def test_train_loader_is_worker_independent_and_resumes_mid_epoch(shapes_root):
    """The same batches, augmentation included, with 0 or 2 workers; a loader restored from a mid-epoch state
    yields exactly the rest of the epoch (what Lightning does with the state saved in checkpoints)."""
    def loader(workers):
        dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=4, num_workers=workers,
                               hflip=True, color_jitter=True, box_jitter=0.1, test_splits=["testA"])
        dm.setup("fit")
        return dm.train_dataloader()

    torch.manual_seed(0)
    plain = loader(0)
    plain.sampler.set_epoch(1)
    epoch = _batches(plain)
    workers = loader(2)
    workers.sampler.set_epoch(1)
    assert _same(_batches(workers), epoch)

    resumed = loader(2)
    resumed.load_state_dict({"epoch": 1, "batches_done": 2, "batch_size": 4})
    assert _same(_batches(resumed), epoch[2:])
    at_end = loader(0)
    at_end.load_state_dict({"epoch": 1, "batches_done": len(at_end), "batch_size": 4})
    assert at_end.sampler.epoch == 2  # saved at an epoch's end: the next epoch starts from its beginning


# ---- checkpoints given to a run: damaged, unsafe, or made by another experiment (issue 21) --------------------

class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran_code",))


DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
    "random": lambda good: bytes(random.Random(0).randrange(256) for _ in range(4096)),
}


def run_cli(verb: str, experiment: str, fx: dict, root: Path, *extra: str, capsys) -> tuple[int, list[str], str]:
    """(exit code, the `samadapt: error:` lines, all of stderr) of a tiny run of `experiment`."""
    with pytest.raises(SystemExit) as exit_info:
        main([verb, *configs(experiment), *tiny_overrides(fx["sam"], fx["shapes"], fx["bert"]),
              "--trainer.logger=false", f"--trainer.default_root_dir={root}", *extra])
    err = capsys.readouterr().err
    return exit_info.value.code, [line for line in err.splitlines() if line.startswith("samadapt: error:")], err


@pytest.fixture
def fx(tiny_sam_checkpoint, shapes_root, tiny_bert, trained_runs):
    return {"sam": tiny_sam_checkpoint, "shapes": shapes_root, "bert": tiny_bert,
            "shallow": trained_runs["shallow"][1]}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_last_ckpt_stops_naming_it_and_the_newest_intact_one(damage, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    good = fx["shallow"].read_bytes()
    intact = folder / "step-2.ckpt"
    if damage != "empty":  # an older checkpoint of this configuration that reads
        intact.write_bytes(good)
        os.utime(intact, (1, 1))
    last = folder / "last.ckpt"
    last.write_bytes(DAMAGE[damage](good))
    code, lines, err = run_cli("fit", "demo/shallow_fusion", fx, tmp_path / "run", "--ckpt_path=last", capsys=capsys)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert str(last) in lines[0] and "no last.ckpt" not in err  # never a silent start from step 0
    if damage == "empty":
        assert "is empty (0 bytes)" in lines[0] and "there is no intact checkpoint of this configuration" in lines[0]
    else:
        assert f"the newest intact checkpoint of this configuration is {intact}" in lines[0]
    assert last.read_bytes() == DAMAGE[damage](good)  # left as it was, for the user to look at


@pytest.mark.parametrize("bad", ["missing", "truncated", "random", "runs_code"])
def test_unreadable_ckpt_path_is_one_line(bad, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{bad}.ckpt"
    if bad == "runs_code":
        torch.save({"state_dict": {}, "payload": RunsCode()}, path)
    elif bad != "missing":
        path.write_bytes(DAMAGE[bad](fx["shallow"].read_bytes()))
    code, lines, err = run_cli("test", "demo/shallow_fusion", fx, tmp_path / "run", f"--ckpt_path={path}",
                               capsys=capsys)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert str(path) in lines[0]
    assert "weights_only" not in err  # torch's advice to load unsafely is not relayed
    assert not (tmp_path / "ran_code").exists()
    if bad == "runs_code":
        assert "could run code" in lines[0]


@pytest.mark.parametrize("verb, experiment", [("fit", "demo/decoder_only"), ("test", "demo/ldit")])
def test_ckpt_path_of_another_experiment_stops_listing_the_differences(verb, experiment, fx, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    code, lines, err = run_cli(verb, experiment, fx, tmp_path / "run", f"--ckpt_path={fx['shallow']}", capsys=capsys)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    ours = "decoder_only" if experiment == "demo/decoder_only" else "dit"
    assert str(fx["shallow"]) in lines[0]
    assert f"model.method: ours '{ours}', the checkpoint's 'shallow_fusion'" in lines[0]
    assert "model.method_options" in lines[0]


def test_ckpt_path_with_other_evaluation_settings_is_accepted(fx, tmp_path, monkeypatch, capsys):
    """Evaluation settings (threshold, prompts, metrics) and where files live may differ at test time."""
    monkeypatch.chdir(tmp_path)
    main(["test", *configs("demo/shallow_fusion"), *tiny_overrides(fx["sam"], fx["shapes"], fx["bert"]),
          "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={fx['shallow']}",
          "--model.threshold=0.35", "--data.init_args.num_workers=1"])
    assert (tmp_path / "test_metrics.json").is_file()
