"""docs/recipes.md against the configuration LightningCLI builds from the experiment files: no setting of a
published experiment may differ from its source without a marked deviation."""

import pytest

from samadapt.cli import main
from samadapt.commands import recipe

RECIPES = recipe.read_recipes()


def test_every_recipe_names_an_experiment_file():
    assert len(RECIPES) >= 15
    for name in RECIPES:
        assert recipe.config_files(name)[-1].is_file(), name


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_published_settings_hold_in_the_effective_config(experiment):
    rows = recipe.check(experiment)
    unmarked = [f"{r['setting']}: ours {r['ours']!r}, published {r['published']!r} ({r['source']})"
                for r in rows if r["status"].startswith("UNMARKED")]
    assert not unmarked, "\n".join(unmarked)


def test_an_unmarked_difference_is_caught(tmp_path, monkeypatch):
    changed = recipe.RECIPES.read_text().replace("| trainer.gradient_clip_val | 0.15 |",
                                                  "| trainer.gradient_clip_val | 1.0 |", 1)
    assert changed != recipe.RECIPES.read_text()
    (tmp_path / "recipes.md").write_text(changed)
    monkeypatch.setattr(recipe, "RECIPES", tmp_path / "recipes.md")
    rows = {r["setting"]: r for r in recipe.check("refcoco/ldit")}
    assert rows["trainer.gradient_clip_val"]["status"] == "UNMARKED"
    assert rows["model.lr"]["status"] == "match"


def test_recipe_command_prints_the_table(capsys):
    main(["recipe", "refcoco/ldit"])
    out = capsys.readouterr().out
    assert "| trainer.gradient_clip_val | 0.15 | 0.15 |" in out and "0 unmarked" in out


def test_unknown_experiment_is_one_clear_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "refcoco/nonesuch"])
    assert exit_info.value.code == 2 and "refcoco/ldit" in capsys.readouterr().err
