"""The known-harmless messages are silenced at their source, and nothing else is."""

import warnings

from samadapt.cli import main
from samadapt.training.quiet import HARMLESS_WARNINGS
from tests.commands.test_cli import configs, tiny_overrides

HARMLESS_TEXTS = ("module(s) in eval mode", "LeafSpec", "anonymous setting", "Total FLOPs")


def test_a_run_prints_none_of_the_known_harmless_messages(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                          monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what a user's shell shows
        main(["fit", *configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
              "--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null"])  # with W&B (offline)
        warnings.warn("an unrelated warning still shows", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    printed = capfd.readouterr()
    assert not [m for m in messages if any(text in m for text in HARMLESS_TEXTS)]
    assert not [text for text in HARMLESS_TEXTS if text in printed.out + printed.err]
    assert "an unrelated warning still shows" in messages
    assert "Trainable params" in printed.out  # the model summary itself is still there


def test_the_filters_are_precise():
    """Each filter matches its own message only, not a whole category or module."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from samadapt.training.quiet import silence_known_warnings

        silence_known_warnings()
        warnings.warn("Found 207 module(s) in eval mode at the start of training. This may lead to ...", UserWarning,
                      stacklevel=1)
        warnings.warn("Found 3 NaN values in the loss", UserWarning, stacklevel=1)
        warnings.warn("LeafSpec is used elsewhere", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["Found 3 NaN values in the loss", "LeafSpec is used elsewhere"]
    assert len(HARMLESS_WARNINGS) == 2
