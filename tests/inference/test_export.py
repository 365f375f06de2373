"""`samadapt export`: safetensors + JSON that, with the base SAM checkpoint alone, give identical predictions."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.inference.export import adapter_weights
from samadapt.inference.predictor import SamAdaptPredictor
from tests.inference.test_predictor_segment import demo_image

PROMPTS = [{"text": "the red circle"}, {"text": "the red circle", "points": [(40, 70)]},
           {"boxes": [20, 30, 90, 100]}]


def predictions(predictor, image) -> list[np.ndarray]:
    predictor.set_image(image)
    return [predictor.predict(**prompts).probs for prompts in PROMPTS]


@pytest.mark.parametrize("run", ["shallow", "ldit"])
def test_export_then_load_gives_identical_outputs(run, trained_runs, tiny_sam_checkpoint, shapes_root, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    shutil.copy(trained_runs[run][1], ckpt)
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "adapter")])
    reference = SamAdaptPredictor.from_checkpoint(ckpt, precision="fp32")
    ckpt.unlink()  # loading needs the base SAM checkpoint and the export folder only

    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["README.md", "adapter.safetensors", "samadapt_config.json"]  # no temporary files left
    config = json.loads((tmp_path / "adapter" / "samadapt_config.json").read_text())
    assert config["base_sam"]["variant"] == "tiny" and config["text_encoder"] == "bert"
    assert config["method"] == ("shallow_fusion" if run == "shallow" else "dit")
    assert config["base_sam"]["sha256"] and config["base_sam"]["checkpoint_name"] == "tiny_sam.pth"
    weights = load_file(tmp_path / "adapter" / "adapter.safetensors")
    assert sum(w.numel() for w in weights.values()) == config["trainable_params"] == \
        reference.module.parameter_counts()["trainable_params"]

    loaded = SamAdaptPredictor.from_pretrained(tmp_path / "adapter", sam_checkpoint=tiny_sam_checkpoint,
                                               precision="fp32")
    image = demo_image(shapes_root)
    for got, want in zip(predictions(loaded, image), predictions(reference, image), strict=True):
        np.testing.assert_array_equal(got, want)


def test_ema_weights_are_what_inference_and_export_use(trained_runs, tiny_sam_checkpoint, shapes_root, tmp_path):
    checkpoint = torch.load(trained_runs["shallow"][1], map_location="cpu", weights_only=True)
    assert adapter_weights({"state_dict": {"model.a": torch.zeros(2)}, "ema": {"a": torch.ones(2)}})["a"].sum() == 2
    trained = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    checkpoint["ema"] = {k: v + 0.05 * torch.randn_like(v) for k, v in trained.items()}  # a distinct EMA
    checkpoint["hyper_parameters"]["ema_decay"] = 0.9
    torch.save(checkpoint, tmp_path / "ema.ckpt")
    main(["export", "--ckpt", str(tmp_path / "ema.ckpt"), "--out", str(tmp_path / "adapter")])

    image = demo_image(shapes_root)
    with_ema = predictions(SamAdaptPredictor.from_checkpoint(tmp_path / "ema.ckpt", precision="fp32"), image)
    exported = predictions(SamAdaptPredictor.from_export(tmp_path / "adapter", tiny_sam_checkpoint,
                                                         precision="fp32"), image)
    plain = predictions(SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32"), image)
    for a, b, c in zip(with_ema, exported, plain, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def test_bad_exports_are_refused_clearly(trained_runs, tiny_sam_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "a")])
    assert exit_info.value.code == 2 and "checkpoint not found" in capsys.readouterr().err

    with pytest.raises(SamAdaptError, match="adapter config not found"):
        SamAdaptPredictor.from_export(tmp_path / "nothing", tiny_sam_checkpoint)

    main(["export", "--ckpt", str(trained_runs["shallow"][1]), "--out", str(tmp_path / "shallow")])
    main(["export", "--ckpt", str(trained_runs["ldit"][1]), "--out", str(tmp_path / "ldit")])
    shutil.copy(tmp_path / "ldit" / "adapter.safetensors", tmp_path / "shallow" / "adapter.safetensors")
    with pytest.raises(SamAdaptError, match="does not match the shallow_fusion adapter"):
        SamAdaptPredictor.from_export(tmp_path / "shallow", tiny_sam_checkpoint)


def test_export_folder_is_hub_ready(trained_runs, tiny_sam_checkpoint, tmp_path):
    """A model card with YAML front matter (base SAM and hash, method, text encoder, data, the run's test metrics,
    licence) beside the weights; no file name of peft's, whose adapter_config.json has another schema."""
    run_folder, ckpt = trained_runs["shallow"]
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "adapter"), "--license", "apache-2.0"])
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    ours = front["samadapt"]
    assert front["license"] == "apache-2.0" and front["library_name"] == "samadapt"
    assert ours["base_sam"]["checkpoint_name"] == "tiny_sam.pth"
    assert ours["base_sam"]["sha256"] == json.loads((tmp_path / "adapter" / "samadapt_config.json").read_text())[
        "base_sam"]["sha256"]
    assert ours["method"] == "shallow_fusion" and ours["text_encoder"]["kind"] == "bert"
    assert ours["data"] == {"datamodule": "RefCocoDataModule", "dataset": "shapes"}
    results = json.loads((run_folder / "results.json").read_text())
    assert ours["metrics"] == results["metrics"] and "oIoU" in ours["metrics"]["testA"]
    assert "| testA |" in card  # the metrics as a table for people too
    assert not (tmp_path / "adapter" / "adapter_config.json").exists()


def test_folders_exported_before_still_load(trained_runs, tiny_sam_checkpoint, shapes_root, tmp_path):
    main(["export", "--ckpt", str(trained_runs["shallow"][1]), "--out", str(tmp_path / "old")])
    (tmp_path / "old" / "samadapt_config.json").rename(tmp_path / "old" / "adapter_config.json")  # the old name
    (tmp_path / "old" / "README.md").unlink()
    image = demo_image(shapes_root)
    old = predictions(SamAdaptPredictor.from_export(tmp_path / "old", tiny_sam_checkpoint, precision="fp32"), image)
    now = predictions(SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1], precision="fp32"), image)
    for a, b in zip(old, now, strict=True):
        np.testing.assert_array_equal(a, b)


def test_from_pretrained_hub_id_offline_ends_in_one_message(tmp_path, monkeypatch):
    """A Hub id goes through huggingface_hub; offline with an empty cache that is one clear message."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    message = r"'someone/sam-adapter' is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE"
    with pytest.raises(SamAdaptError, match=message):
        SamAdaptPredictor.from_pretrained("someone/sam-adapter")


def test_from_pretrained_finds_the_base_sam_by_its_recorded_name(trained_runs, tiny_sam_checkpoint, tmp_path,
                                                                 monkeypatch):
    main(["export", "--ckpt", str(trained_runs["shallow"][1]), "--out", str(tmp_path / "adapter")])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SamAdaptError, match=r"checkpoints/tiny_sam\.pth"):
        SamAdaptPredictor.from_pretrained(tmp_path / "adapter")
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(tiny_sam_checkpoint, tmp_path / "checkpoints" / "tiny_sam.pth")
    assert SamAdaptPredictor.from_pretrained("adapter", precision="fp32").uses_text
