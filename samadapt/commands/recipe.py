"""`samadapt recipe EXP`: every setting of a published experiment, its value in the configuration LightningCLI
builds from the experiment files (what a user gets), the published value and where it comes from.

The published values live in docs/recipes.md, one section per experiment (`## refcoco/ldit`), one table row
per setting: `| setting | published | source | note |`. `source` is a paper section or a code file and line; "our
choice" marks a value the source does not give (the note says why). A note starting with "DEVIATION:" marks a
setting where samadapt knowingly differs and says why. A section may start with `Inherits: <experiment>` to take
that experiment's rows first; a row published as "(not applicable)" drops an inherited row.
tests/commands/test_recipe.py fails on any difference that is not marked.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from samadapt.errors import MissingFileError, SamAdaptError

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
RECIPES = REPO / "docs" / "recipes.md"
OUR_CHOICE = "our choice"
NOT_APPLICABLE = "(not applicable)"


@dataclass
class Setting:
    key: str  # dotted path in the LightningCLI config, e.g. model.method_options.mode
    published: object
    source: str
    note: str = ""

    @property
    def deviation(self) -> bool:
        return self.note.upper().startswith("DEVIATION")


def read_recipes(path: Path | None = None) -> dict[str, list[Setting]]:
    """Experiment name -> its settings, inherited rows first (a later row of the same key replaces it)."""
    path = path or RECIPES
    sections: dict[str, dict[str, Setting]] = {}
    parents: dict[str, str] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].split()[0].strip("`")
            sections[current] = {}
        elif current and line.startswith("Inherits:"):
            parents[current] = line.split(":", 1)[1].strip().strip("`")
        elif current and line.startswith("|") and not line.startswith(("| setting", "|---", "| ---")):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 4:
                raise SamAdaptError(f"{path}: a recipe row needs 4 cells (setting, published, source, note): {line}")
            key, value, source, note = cells
            sections[current][key.strip("`")] = Setting(key.strip("`"), yaml.safe_load(value.strip("`")), source, note)

    def resolved(name: str, seen: tuple[str, ...] = ()) -> dict[str, Setting]:
        if name in seen or (name in parents and parents[name] not in sections):
            raise SamAdaptError(f"{path}: section {name} inherits from a missing or circular section")
        base = resolved(parents[name], (*seen, name)) if name in parents else {}
        merged = {**base, **sections[name]}
        return {key: row for key, row in merged.items() if row.published != NOT_APPLICABLE}

    return {name: list(resolved(name).values()) for name in sections}


def config_files(experiment: str) -> list[Path]:
    """base.yaml, then the experiment file; for an ablation (`refcoco/ldit/frozen`) its experiment file first."""
    path = EXPERIMENTS / f"{experiment}.yaml"
    if not path.is_file():
        raise MissingFileError(path, "experiment file", "Name an experiment as <dataset>/<method>, e.g. refcoco/ldit.")
    files = [EXPERIMENTS / "base.yaml"]
    parent = path.parent.with_suffix(".yaml")
    if parent.is_file():
        files.append(parent)
    return [*files, path]


def effective_config(files: list[Path], overrides: list[str] = ()) -> dict:
    """The configuration `samadapt fit --config ...` resolves (defaults, links, later files win), nothing built."""
    from samadapt.training.cli import SamAdaptCLI

    class ParseOnly(SamAdaptCLI):
        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

    args = [a for f in files for a in ("--config", str(f))] + list(overrides)
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)  # parsing seeds nothing worth a line
    try:
        with warnings.catch_warnings():  # LightningCLI warns when args come while sys.argv holds the verb's own
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            return ParseOnly(args=args, run=False).config.as_dict()
    finally:
        seed_log.setLevel(level)


def lookup(config: dict, key: str) -> object:
    node: object = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and "init_args" in node and part in node["init_args"]:
            node = node["init_args"][part]
        else:
            return "<not set>"
    return node


def same(ours: object, published: object) -> bool:
    if isinstance(ours, bool) or isinstance(published, bool):
        return ours is published or ours == published
    if isinstance(ours, int | float) and isinstance(published, int | float):
        return abs(float(ours) - float(published)) <= 1e-12 * max(1.0, abs(float(published)))
    if isinstance(ours, list | tuple) and isinstance(published, list | tuple):
        return len(ours) == len(published) and all(same(a, b) for a, b in zip(ours, published, strict=True))
    if isinstance(ours, dict) and isinstance(published, dict):
        return ours.keys() == published.keys() and all(same(ours[k], published[k]) for k in ours)
    return ours == published


def status(setting: Setting, ours: object) -> str:
    if setting.source.lower().startswith(OUR_CHOICE):
        return "our choice" if same(ours, setting.published) else "UNMARKED (the table's choice drifted)"
    if same(ours, setting.published):
        return "match"
    return "deviation" if setting.deviation else "UNMARKED"


def check(experiment: str) -> list[dict]:
    recipes = read_recipes()
    if experiment not in recipes:
        raise SamAdaptError(f"no published recipe for {experiment!r} in {RECIPES}; "
                            f"recipes: {', '.join(sorted(recipes))}")
    config = effective_config(config_files(experiment))
    rows = []
    for setting in recipes[experiment]:
        ours = lookup(config, setting.key)
        rows.append({"setting": setting.key, "ours": ours, "published": setting.published, "source": setting.source,
                     "status": status(setting, ours), "note": setting.note})
    return rows


def show(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="samadapt recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", help="e.g. refcoco/ldit; without it, list the recipes")
    args = parser.parse_args(argv)
    if args.experiment is None:
        print("\n".join(sorted(read_recipes())))
        return
    rows = check(args.experiment)
    print(f"{args.experiment}: {', '.join(str(f.relative_to(REPO)) for f in config_files(args.experiment))}")
    print("| setting | ours | published | source | status | note |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {show(row['ours'])} | {show(row['published'])} | {row['source']} | "
              f"{row['status']} | {row['note']} |")
    unmarked = [r["setting"] for r in rows if r["status"].startswith("UNMARKED")]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("match", "deviation", "our choice")}
    print(f"{counts['match']} match, {counts['deviation']} marked deviations, {counts['our choice']} our choices, "
          f"{len(unmarked)} unmarked")
    if unmarked:
        print(f"unmarked differences: {', '.join(unmarked)}", file=sys.stderr)
        sys.exit(1)
