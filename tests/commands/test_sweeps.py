"""The W&B sweep files: every grid point, expanded into a command line the way `wandb agent` does it (wandb's
own helpers), parses as a samadapt fit of that method with that seed."""

import itertools
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from samadapt.cli import main

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The argv `wandb agent` runs for one grid point (wandb_agent.py: macros replaced by create_sweep_command_args)."""
    variables = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    variables.update(env=["/usr/bin/env"], program=[sweep["program"]], interpreter=["python"])
    argv: list[str] = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        argv += variables[chunk[2:-1]] if chunk.startswith("${") else [chunk]
    return argv


def grid(sweep: dict) -> list[dict]:
    names = list(sweep["parameters"])
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(sweep["parameters"][n]["values"] for n in names))]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_grid_point_is_a_fit_of_that_method_and_seed(path, monkeypatch, capsys):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["method"] == "grid" and sweep["metric"]["name"] == "test/oIoU"
    monkeypatch.chdir(REPO)
    points = grid(sweep)
    assert len({p["seed_everything"] for p in points}) >= 3
    # every method once (a parse costs ~1 s), with the seeds of the grid spread over them
    seeds = sorted({p["seed_everything"] for p in points})
    for i, config in enumerate(sweep["parameters"]["config"]["values"]):
        values = {"config": config, "seed_everything": seeds[i % len(seeds)]}
        argv = agent_command(sweep, values)
        assert argv[:3] == ["/usr/bin/env", "samadapt", "fit"]
        assert f"--config={config}" in argv and (REPO / config).is_file()
        with pytest.raises(SystemExit) as exit_info:
            main([*argv[2:], "--print_config"])
        assert exit_info.value.code in (0, None)
        printed = yaml.safe_load(capsys.readouterr().out)
        wanted = yaml.safe_load((REPO / config).read_text())["model"]
        assert printed["seed_everything"] == values["seed_everything"]
        assert printed["model"]["method"] == wanted.get("method", printed["model"]["method"])
        options = printed["model"]["method_options"] or {}
        assert options == {**options, **(wanted.get("method_options") or {})}
