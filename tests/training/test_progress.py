"""Progress of a step-based run: steps of max_steps, and readable lines when stdout is not a terminal."""

from samadapt.cli import main
from samadapt.training.cli import SamAdaptCLI
from samadapt.training.progress import StepProgressBar
from tests.commands.test_cli import configs, tiny_overrides

STEP_RUN = ["--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null", "--trainer.logger=false",
            "--trainer.max_epochs=-1"]


def test_without_a_terminal_progress_is_plain_lines(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # pytest captures stdout: not a terminal
    main(["fit", *configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=3),
          *STEP_RUN, "--test_after_fit=false"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[train]")]
    assert lines[0].startswith("[train] step 1/3 (33%) epoch 0 | ") and lines[-1].startswith("[train] step 3/3 (100%)")
    assert "s/step | ETA " in lines[0] and "train/loss" in lines[0]
    assert any(line.startswith("[val] step 2: ") and "val/oIoU" in line for line in out.splitlines()), out
    assert "\r" not in out and "Epoch 0/-2" not in out


def test_in_a_terminal_the_bar_counts_steps_of_max_steps(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = SamAdaptCLI(args=[*configs("demo/shallow_fusion"),
                            *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=3), *STEP_RUN],
                      run=False)
    (bar,) = [c for c in cli.trainer.callbacks if isinstance(c, StepProgressBar)]  # base.yaml's
    bar.lines = False
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train = cli.trainer.progress_bar_callback.progress.tasks[bar.train_progress_bar_id]
    assert train.total == 3 and train.completed == 3
    assert train.description.strip().endswith("Step (epoch 0)")
