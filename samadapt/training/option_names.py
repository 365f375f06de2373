"""Option names for the training verbs: the choices `fit --help` lists, and the nearest valid name for a typo.

jsonargparse answers `--model.init_args.methd=lora` with a usage screen and "unrecognized arguments", and a typo
inside `--data.init_args` with a page about Union subtypes; samadapt stops with one line naming the nearest key.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path

import yaml

from samadapt.errors import SamAdaptError


def datamodule_names() -> list[str]:
    import data_modules

    return [f"data_modules.{name}" for name in data_modules.__all__
            if name.endswith("DataModule") and name != "PromptedSegDataModule"]


def describe_choices(parser) -> None:
    """List the registered names in the help of --model.method, --model.sam_variant, --model.text_encoder, --data."""
    from samadapt.methods import METHODS
    from samadapt.sam.config import SAM_CONFIGS
    from samadapt.text import TEXT_ENCODERS

    choices = {"--model.method": sorted(METHODS), "--model.sam_variant": list(SAM_CONFIGS),
               "--model.text_encoder": [*TEXT_ENCODERS, "null"], "--data": datamodule_names()}
    for option, names in choices.items():
        action = parser._option_string_actions.get(option)
        if action is not None:
            action.help = f"{action.help or ''} Choices: {', '.join(names)}.".strip()


def _is_config_file_option(action) -> bool:
    return "ActionConfig" in type(action).__name__


def _nested_ok(name: str, options: dict) -> bool:
    """`--a.b.c` is accepted by jsonargparse when some `--a` or `--a.b` takes nested keys (a dict or a class)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        action = options.get(".".join(parts[:i]))
        if action is not None:
            return not _is_config_file_option(action)
    return False


def data_init_args(class_path: str) -> set[str]:
    """The init_args a DataModule accepts: its own and its parents' (they pass **kwargs up)."""
    import importlib

    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module or "data_modules"), name)
    return {p for klass in cls.__mro__ if "__init__" in vars(klass)
            for p in inspect.signature(klass.__init__).parameters if p not in ("self", "args", "kwargs")}


def stated_data_class(argv: list[str]) -> str | None:
    """The data class_path the arguments give, else the last --config file that names one."""
    found = None
    for i, arg in enumerate(argv):
        name, has_value, value = arg.partition("=")
        value = value if has_value else next(iter(argv[i + 1:i + 2]), "")
        if name == "--data" and value.endswith((".yaml", ".yml")) and Path(value).is_file():
            found = (yaml.safe_load(Path(value).read_text()) or {}).get("class_path", found)
        elif name in ("--data", "--data.class_path"):
            found = value
        elif name == "--config" and Path(value).is_file():
            data = (yaml.safe_load(Path(value).read_text()) or {}).get("data") or {}
            found = data.get("class_path", found) if isinstance(data, dict) else found
    return found


def nearest(name: str, known: list[str], prefix: str = "") -> str:
    """"; did you mean <prefix><the closest known name>?" (or where to look when none is close)."""
    candidates = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if not candidates:  # `--model.init_args.methd`: the model is not a subclass here, its keys have no init_args
        candidates = difflib.get_close_matches(name.replace(".init_args.", "."), known, n=1, cutoff=0.5)
    return f"; did you mean {prefix}{candidates[0]}?" if candidates else "; `samadapt fit --help` lists the options"


def check_option_names(parser, argv: list[str], command: str) -> None:
    """Stop on an option name no key of the command's parser matches, naming the nearest valid one."""
    options = parser._option_string_actions
    known = sorted(o for o in options if o.startswith("--"))
    data_class = None
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg.partition("=")[0].removesuffix("+")
        if name in options:
            continue
        if name.startswith("--data.init_args."):
            data_class = data_class or stated_data_class(argv)
            key = name.removeprefix("--data.init_args.").split(".")[0]
            try:
                accepted = data_init_args(data_class) if data_class else None
            except (ImportError, AttributeError, ValueError):
                accepted = None
            if accepted is None or key in accepted:
                continue
            raise SamAdaptError(f"{data_class} has no option {key!r} ({name})"
                                f"{nearest(key, sorted(accepted), prefix='--data.init_args.')}")
        if _nested_ok(name, options):
            continue
        longer = [o for o in known if o.startswith(name)]
        if longer:  # argparse would silently take a prefix: `--trainer.max_step` for max_steps is a typo, not a choice
            raise SamAdaptError(f"{command} has no option {name} (names are not abbreviated); did you mean "
                                f"{longer[0]}?")
        raise SamAdaptError(f"{command} has no option {name}{nearest(name, known)}")
