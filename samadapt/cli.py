"""The `samadapt` command: LightningCLI verbs (fit, validate, test, predict) plus samadapt's own verbs."""

import os
import sys
import tempfile

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from samadapt.errors import SamAdaptError
from samadapt.module import SamAdaptModule
from samadapt.wandb_run import SaveConfigToLoggers, configure_wandb_loggers


class SamAdaptCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True, **kwargs):
        super().__init__(
            SamAdaptModule,
            LightningDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            **kwargs,
        )

    def after_instantiate_classes(self) -> None:
        configure_wandb_loggers(self.trainer, self.model, self.datamodule, self.subcommand)  # before W&B starts

    def before_fit(self) -> None:
        """Output folders must be writable; `--ckpt_path last`: resume from this configuration's last.ckpt."""
        check_output_folders(self.trainer)
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            from samadapt.resume import find_last_checkpoint

            found = find_last_checkpoint(self.trainer, self.model, self.datamodule)
            print(f"samadapt: resuming from {found}" if found else
                  "samadapt: no last.ckpt of this configuration yet: training from the start", file=sys.stderr)
            config["ckpt_path"] = found


def check_output_folders(trainer) -> None:
    """Stop before training if a folder the run writes to cannot be created or written (not after hours)."""
    folders = {trainer.default_root_dir, *(lg.save_dir for lg in trainer.loggers if getattr(lg, "save_dir", None))}
    folders |= {cb.dirpath for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
    for folder in sorted(str(f) for f in folders):
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise SamAdaptError(f"cannot write to output folder {folder} ({err.strerror}); choose another with "
                                "--trainer.default_root_dir (and the logger's save_dir).") from None


def _synth(argv: list[str]) -> None:
    from data_modules.synth import main

    main(argv)


def _prepare(argv: list[str]) -> None:
    from data_modules.prepare import main

    main(argv)


def _inspect_data(argv: list[str]) -> None:
    from data_modules.inspect import main

    main(argv)


def _prepare_demo(argv: list[str]) -> None:
    from samadapt.demo import prepare_main

    prepare_main(argv)


def _demo(argv: list[str]) -> None:
    from samadapt.demo import main

    main(argv)


def _evaluate_masks(argv: list[str]) -> None:
    from samadapt.evaluate_masks import main

    main(argv)


def _compare(argv: list[str]) -> None:
    from samadapt.compare import main

    main(argv)


def one_line(err: SamAdaptError) -> str:
    """The message itself, also when a DataLoader worker wrapped it in its traceback text."""
    text = str(err)
    if "Original Traceback" in text:  # "...\nsamadapt.errors.MissingFileError: image not found: ..."
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def _segment(argv: list[str]) -> None:
    from samadapt.segment import main

    main(argv)


def _export(argv: list[str]) -> None:
    from samadapt.export import main

    main(argv)


def _params(argv: list[str]) -> None:
    from samadapt.params import main

    main(argv)


def _serve(argv: list[str]) -> None:
    from samadapt.app.serve import main

    main(argv)


def finish_wandb() -> None:
    """Close the W&B run, if one is open, so the next run in this process starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


EXTRA_VERBS = {
    "synth": (_synth, "write the synthetic referring dataset in the RefCOCO layout"),
    "prepare": (_prepare, "one-off dataset conversions: prepare refcoco --root DIR (refs pickles -> JSON)"),
    "inspect-data": (_inspect_data, "report samples per split, prompts and vocabulary, and draw a PNG grid"),
    "prepare-demo": (_prepare_demo, "write the demo data and pretrain the tiny stand-in SAM and CLIP"),
    "evaluate-masks": (_evaluate_masks, "metrics of a folder of predicted mask PNGs against ground-truth PNGs"),
    "params": (_params, "total and trainable parameter counts by part for --config experiments/<exp>.yaml"),
    "demo": (_demo, "the end-to-end demo: data, tiny SAM, every method trained, evaluated, compared"),
    "compare": (_compare, "compare run folders (their results.json): markdown table and bar chart"),
    "segment": (_segment, "segment images with a trained checkpoint: mask and overlay PNGs"),
    "export": (_export, "export a checkpoint's trainable weights (safetensors) and config (JSON)"),
    "serve": (_serve, "a local web page to try checkpoints with text, clicks and boxes, side by side"),
}


def main(argv: list[str] | None = None) -> None:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        if argv and argv[0] in EXTRA_VERBS:
            EXTRA_VERBS[argv[0]][0](argv[1:])
        else:
            if argv and argv[0] in ("-h", "--help"):
                print("samadapt verbs: fit, validate, test, predict (LightningCLI), "
                      + ", ".join(f"{k} ({v[1]})" for k, v in EXTRA_VERBS.items()))
            SamAdaptCLI(args=None if from_shell else argv)
    except SamAdaptError as err:
        print(f"samadapt: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
