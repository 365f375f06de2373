"""The `samadapt` command: LightningCLI verbs (fit, validate, test, predict) plus samadapt's own verbs."""

import importlib
import os
import sys

from samadapt.errors import SamAdaptError

# verb -> (module:function it runs with the remaining arguments, what it does); modules load only when used
EXTRA_VERBS = {
    "synth": ("data_modules.synthetic.referring:main", "write the synthetic referring dataset in the RefCOCO layout"),
    "prepare": ("samadapt.commands.prepare:main",
                "one-off dataset conversions: prepare refcoco --root DIR (refs pickles -> JSON)"),
    "inspect-data": ("samadapt.commands.inspect_data:main",
                     "report samples per split, prompts and vocabulary, and draw a PNG grid"),
    "prepare-demo": ("samadapt.commands.demo:prepare_main",
                     "write the demo data and pretrain the tiny stand-in SAM and CLIP"),
    "evaluate-masks": ("samadapt.evaluation.evaluate_masks:main",
                       "metrics of a folder of predicted mask PNGs against ground-truth PNGs"),
    "recipe": ("samadapt.commands.recipe:main",
               "a published experiment setting by setting: ours, published, source, deviations marked"),
    "params": ("samadapt.commands.params:main",
               "total and trainable parameter counts by part for --config experiments/<dataset>/<method>.yaml"),
    "demo": ("samadapt.commands.demo:main",
             "the end-to-end demo: data, tiny SAM, every method trained, evaluated, compared"),
    "compare": ("samadapt.commands.compare:main",
                "compare run folders (their results.json): markdown table and bar chart"),
    "segment": ("samadapt.inference.segment:main", "segment images with a trained checkpoint: mask and overlay PNGs"),
    "export": ("samadapt.inference.export:main",
               "export a checkpoint's trainable weights (safetensors) and config (JSON)"),
    "convert-sam": ("samadapt.commands.convert_sam:main",
                    "Hugging Face SamModel weights (folder or model.safetensors) -> an official-format SAM .pth"),
    "serve": ("samadapt.app.serve:main",
              "a local web page to try checkpoints with text, clicks and boxes, side by side"),
}


TRAINING_VERBS = {
    "fit": "train: --config experiments/base.yaml --config experiments/<dataset>/<method>.yaml [--key=value ...]",
    "validate": "evaluate on the validation split",
    "test": "evaluate on the test splits: test_metrics.json/.md and results.json in the run folder",
    "predict": "each test sample's mask PNG at the image's size and predictions.csv (--out DIR)",
}


def usage() -> str:
    """The verbs and what each does; printed without loading torch or Lightning."""
    width = max(map(len, [*TRAINING_VERBS, *EXTRA_VERBS])) + 2
    lines = ["usage: samadapt VERB [options]   (samadapt VERB --help: the options of one verb)", "",
             "training verbs (LightningCLI, configured by experiments/*.yaml):"]
    lines += [f"  {verb:<{width}}{what}" for verb, what in TRAINING_VERBS.items()]
    lines += ["", "other verbs:"] + [f"  {verb:<{width}}{what}" for verb, (_, what) in EXTRA_VERBS.items()]
    return "\n".join(lines)


def run_verb(verb: str, argv: list[str]) -> None:
    module, function = EXTRA_VERBS[verb][0].split(":")
    getattr(importlib.import_module(module), function)(argv)


def one_line(err: SamAdaptError) -> str:
    """The message itself, also when a DataLoader worker wrapped it in its traceback text."""
    text = str(err)
    if "Original Traceback" in text:  # "...\nsamadapt.errors.MissingFileError: image not found: ..."
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def wrapped_error(err: BaseException) -> SamAdaptError | None:
    """The SamAdaptError behind `err`, if any: jsonargparse re-raises an error from a DataModule's or the module's
    __init__ as ValueError("Does not validate against any of the Union subtypes ...") with ours as its cause."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SamAdaptError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(usage())
            if not argv:
                sys.exit(2)
        elif argv[0] in EXTRA_VERBS:
            run_verb(argv[0], argv[1:])
        else:
            from samadapt.training.cli import SamAdaptCLI, finish_wandb  # lightning loads only for these verbs

            try:
                SamAdaptCLI(args=None if from_shell else argv)
            finally:
                finish_wandb()
    except Exception as err:
        reason = err if isinstance(err, SamAdaptError) else wrapped_error(err)
        if reason is None:
            raise
        print(f"samadapt: error: {one_line(reason)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
