"""SamAdaptCLI: LightningCLI for the training verbs (fit, validate, test, predict), with samadapt's run setup."""

import os
import sys
import tempfile
from pathlib import Path

import yaml
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from samadapt.errors import SamAdaptError
from samadapt.training.module import SamAdaptModule
from samadapt.training.option_names import check_option_names, describe_choices
from samadapt.training.quiet import drop_wandb_anonymous, silence_known_warnings
from samadapt.training.resume import check_ckpt_path
from samadapt.training.wandb_run import SaveConfigToLoggers, configure_wandb_loggers


class SamAdaptCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True, **kwargs):
        silence_known_warnings()
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

    def add_arguments_to_parser(self, parser) -> None:
        # The image size is stated once, in model: (null = the SAM variant's own); the DataModule letterboxes to it.
        parser.link_arguments(("model.sam_variant", "model.image_size"), "data.init_args.image_size",
                              compute_fn=model_input_size)
        # The placement of the image in that square likewise: a checkpoint records it, the predictor follows it.
        parser.link_arguments("model.letterbox", "data.init_args.letterbox")
        describe_choices(parser)  # method names, SAM variants, text encoders, DataModules in --help

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--out", type=str | None, default=None,
                                help="folder of the mask PNGs and predictions.csv (default: <run folder>/predictions)")
        if subcommand == "fit":
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="after training, evaluate the test splits with the best checkpoint (the last "
                                     "weights without one) in the same run folder and W&B run")
        return parser

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        loggers_follow_root_dir(config.trainer)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        drop_wandb_anonymous(self.trainer.loggers)  # before W&B starts

    def parse_arguments(self, parser, args) -> None:
        argv = sys.argv[1:] if args is None else args
        if not isinstance(argv, dict):  # a typo'd option name: one line naming the nearest valid one
            verbs = getattr(self, "_subcommand_parsers", {})  # none when built with run=False
            if argv and argv[0] in verbs:
                check_option_names(verbs[argv[0]], list(argv[1:]), f"samadapt {argv[0]}")
            elif not verbs:
                check_option_names(parser, list(argv), "samadapt")
        super().parse_arguments(parser, args)
        if not isinstance(args, dict):
            config = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
            check_data_image_size(sys.argv[1:] if args is None else list(args), config.data.init_args.image_size)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads --ckpt_path here (a traceback when the file is damaged) and silently replaces the
        experiment's model settings with the checkpoint's; samadapt checks the file and its settings once the
        classes are built instead (after_instantiate_classes), and says what differs."""

    def after_instantiate_classes(self) -> None:
        if self.subcommand:
            check_ckpt_path(self.config_init[self.subcommand].get("ckpt_path"), self.model, self.datamodule,
                            resuming=self.subcommand == "fit")
        configure_wandb_loggers(self.trainer, self.model, self.datamodule, self.subcommand)  # before W&B starts

    def before_fit(self) -> None:
        """Output folders must be writable; `--ckpt_path last`: resume from this configuration's last.ckpt."""
        check_output_folders(self.trainer)
        self.check_test_splits()
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            from samadapt.training.resume import find_last_checkpoint

            found = find_last_checkpoint(self.trainer, self.model, self.datamodule)
            print(f"samadapt: resuming from {found}" if found else
                  "samadapt: no last.ckpt of this configuration yet: training from the start", file=sys.stderr)
            config["ckpt_path"] = found
        if config.get("ckpt_path"):  # the resumed run continues in the same version folder and W&B run
            from samadapt.training.checkpoints import read_checkpoint
            from samadapt.training.run_identity import continue_run

            continued = continue_run(self.trainer, read_checkpoint(config["ckpt_path"]))
            if continued:
                print(f"samadapt: continuing {', '.join(continued)}", file=sys.stderr)

    def tests_after_fit(self) -> bool:
        from lightning.pytorch.utilities.model_helpers import is_overridden

        return bool(self.config_init["fit"].get("test_after_fit", True) and self.datamodule is not None
                    and is_overridden("test_dataloader", self.datamodule))

    def check_test_splits(self) -> None:
        """Test splits that cannot be read stop the run before training, not after it."""
        if not self.tests_after_fit():
            return
        try:
            self.datamodule.setup("test")
        except SamAdaptError as err:
            raise SamAdaptError(f"{err} (the test splits are evaluated after training: give readable "
                                "data.init_args.test_splits, or pass --test_after_fit=false)") from None

    def after_fit(self) -> None:
        """The run ends with its test numbers: test splits on the best checkpoint, results in the same folder."""
        if self.tests_after_fit() and not self.trainer.interrupted:
            from lightning.pytorch.strategies import ModelParallelStrategy

            # rank 0's choice for every process: a process that chose otherwise would wait in another collective
            best = self.trainer.strategy.broadcast(getattr(self.trainer.checkpoint_callback, "best_model_path", ""))
            if best and isinstance(self.trainer.strategy, ModelParallelStrategy):
                # FSDP2's sharded checkpoints hold the trainable weights only, which its loader cannot restore
                # into a whole model: test the weights in memory and say so
                print("samadapt: testing the final weights (a sharded FSDP2 checkpoint is not reloaded); "
                      f"`samadapt test --ckpt_path {best}` evaluates the best one", file=sys.stderr)
                best = ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)

    def before_predict(self) -> None:
        """Predictions go to files (one mask PNG per sample, predictions.csv), not into memory."""
        from samadapt.training.prediction_writer import PredictionWriter

        config = self.config_init[self.subcommand]
        self.trainer.callbacks.append(PredictionWriter(config.get("out")))
        if config.get("return_predictions") is None:
            config["return_predictions"] = False


def loggers_follow_root_dir(trainer_config) -> None:
    """A logger whose save_dir is not set writes under trainer.default_root_dir, so that one option moves the whole
    run (CSV, W&B, checkpoints, config, results). W&B's default save_dir "." counts as not set; its `dir` as set."""
    root = trainer_config.get("default_root_dir") or "."
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and init_args.get("save_dir") in (None, "", ".") and not init_args.get("dir"):
            init_args.save_dir = root


def model_input_size(sam_variant: str, image_size: int | None) -> int:
    """The side of the square image the model reads: `image_size`, or the SAM variant's native size when null."""
    from samadapt.sam.config import get_config

    return image_size or get_config(sam_variant).image_size


def check_data_image_size(argv: list[str], linked: int) -> None:
    """The data follows the model's image size through a link, which would silently replace a data image size
    stated in a config file or the shell: one that disagrees is an error."""
    for source, stated in stated_data_image_sizes(argv):
        if stated != linked:
            raise SamAdaptError(f"data.init_args.image_size {stated} ({source}) differs from the model's input size "
                                f"{linked}: the data follows model.image_size; set that and drop the data one")


def stated_data_image_sizes(argv: list[str]):
    """(where, value) of each data.init_args.image_size the --config files and the arguments give."""
    for i, arg in enumerate(argv):
        name, has_value, value = arg.partition("=")
        value = value if has_value else next(iter(argv[i + 1:i + 2]), "")
        if name == "--data.init_args.image_size":
            yield "the command line", yaml.safe_load(value)
        elif name == "--config" and Path(value).is_file():
            init_args = ((yaml.safe_load(Path(value).read_text()) or {}).get("data") or {}).get("init_args") or {}
            if "image_size" in init_args:
                yield value, init_args["image_size"]


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


def finish_wandb() -> None:
    """Close the W&B run, if one is open, so the next run in this process starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
