"""`fit --help` lists the registered names; a mistyped option ends in one line naming the nearest valid one."""

import pytest

from samadapt.cli import main
from tests.commands.test_cli import configs


@pytest.mark.parametrize(("typo", "nearest"), [
    ("--model.init_args.methd=lora", "did you mean --model.method?"),
    ("--trainer.max_stepz=3", "did you mean --trainer.max_steps?"),
    ("--trainer.max_step=3", "did you mean --trainer.max_steps?"),  # argparse alone would take the prefix
    ("--data.init_args.roott=x", "did you mean --data.init_args.root?"),
])
def test_a_typo_names_the_nearest_option_in_one_line(typo, nearest, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs("demo/shallow_fusion"), typo])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samadapt: error: ") and err[0].endswith(nearest)
    assert not list(tmp_path.iterdir())  # stopped before anything was built


def test_data_options_are_checked_against_the_chosen_datamodule(tmp_path, monkeypatch, capsys):
    """camouflaged_only is Cod10kDataModule's (accepted there), not RefCocoDataModule's."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", *configs("cod10k/decoder_only"), "--data.init_args.camouflaged_onyl=false"])
    assert capsys.readouterr().err.strip().endswith("did you mean --data.init_args.camouflaged_only?")
    with pytest.raises(SystemExit) as exit_info:  # --print_config exits 0 once the arguments parse
        main(["fit", *configs("cod10k/decoder_only"), "--data.init_args.camouflaged_only=false", "--print_config"])
    assert exit_info.value.code == 0
    assert "camouflaged_only: false" in capsys.readouterr().out


def test_fit_help_lists_methods_sam_variants_text_encoders_and_datamodules(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for names in (["shallow_fusion", "sam_ptx", "lora", "dit"], ["vit_b", "vit_l", "vit_h", "tiny"], ["bert", "clip"],
                  ["data_modules.RefCocoDataModule", "data_modules.FolderDataModule", "data_modules.Cod10kDataModule"]):
        assert all(name in text for name in names), names
    assert "Choices: add_decoder_layers, clip_guided" in text
