"""What the page says about a run: a method description right for every registered method (built from its flags),
and the run's test score read from the files a tested run leaves."""

import json

import pytest

from samadapt.app.describe import describe_method
from samadapt.app.run_scores import read_test_score
from samadapt.methods import METHODS
from samadapt.methods.prompt_learning import PromptLearning


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_is_described_by_its_flags(name):
    method = METHODS[name]
    text = describe_method(method)
    assert ("Reads no text" in text) is not method.uses_text, text
    assert ("Reads the text" in text) is method.uses_text, text
    assert ("encodes the image again" in text) is method.conditions_encoder, text
    assert ("encoded once" in text) is not method.conditions_encoder, text
    assert ("Trains nothing" in text) is not method.needs_training, text


def test_the_two_methods_once_said_to_read_text_do_not():
    for name in ("parallel_adapter", "lora"):
        assert describe_method(METHODS[name]).startswith("Reads no text. Its trained weights sit inside the image")


def test_a_run_that_trained_the_encoder_and_an_instances_losses_are_described():
    text = describe_method(METHODS["shallow_fusion"], reuses_image_embedding=False)
    assert "image encoder was trained too" in text and "encoded once" not in text
    assert "auxiliary loss pmm" in describe_method(PromptLearning(pmm=True))
    assert "auxiliary" not in describe_method(PromptLearning())


def write_json(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_test_score_from_results_then_test_metrics(tmp_path):
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    assert read_test_score(ckpt) is None  # not tested
    report = {"results": [{"split": "testA", "prompts": "box", "oIoU": 0.5, "mIoU": 0.4},
                          {"split": "testA", "prompts": "text", "oIoU": 0.2}]}
    write_json(tmp_path / "run" / "version_0" / "test_metrics.json", report)
    assert read_test_score(ckpt) == {"metric": "oIoU", "value": 0.5, "split": "testA", "prompts": "box",
                                     "file": str(tmp_path / "run" / "version_0" / "test_metrics.json")}
    results = tmp_path / "run" / "version_0" / "results.json"
    pooled = {"mIoU": 0.1, "oIoU": 0.6}
    write_json(results, {"eval_prompts": "text", "metrics": {"testA": {"oIoU": 0.3}, "all": pooled}})
    assert read_test_score(ckpt) == {"metric": "oIoU", "value": 0.6, "split": "all", "prompts": "text",
                                     "file": str(results)}
    results.write_text("{ not json")  # unreadable: the other file still gives the score
    assert read_test_score(ckpt)["value"] == 0.5


def test_test_score_of_other_metric_families_and_loose_checkpoints(tmp_path):
    write_json(tmp_path / "results.json", {"eval_prompts": "none", "metrics": {"all": {"MAE": 0.07, "Sm": 0.8}}})
    assert read_test_score(tmp_path / "model.ckpt")["metric"] == "MAE"


def test_a_nan_test_metric_is_skipped(tmp_path):
    """json.dump writes a diverged run's NaN, json.load reads it back; /api/info must stay valid JSON."""
    (tmp_path / "results.json").write_text('{"eval_prompts": "text", "metrics": {"all": {"oIoU": NaN, "mIoU": 0.2}}}')
    assert read_test_score(tmp_path / "model.ckpt")["metric"] == "mIoU"
