"""`samadapt export`: safetensors + JSON that, with the base SAM checkpoint alone, give identical predictions."""

import json
import shutil

import numpy as np
import pytest
import torch
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
    reference = SamAdaptPredictor.from_checkpoint(ckpt)
    ckpt.unlink()  # loading needs the base SAM checkpoint and the export folder only

    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter.safetensors", "adapter_config.json"]  # no temporary files left
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_sam"]["variant"] == "tiny" and config["text_encoder"] == "bert"
    assert config["method"] == ("shallow_fusion" if run == "shallow" else "dit")
    assert config["base_sam"]["sha256"] and config["base_sam"]["checkpoint_name"] == "tiny_sam.pth"
    weights = load_file(tmp_path / "adapter" / "adapter.safetensors")
    assert sum(w.numel() for w in weights.values()) == config["trainable_params"] == \
        reference.module.parameter_counts()["trainable_params"]

    loaded = SamAdaptPredictor.from_export(tmp_path / "adapter", sam_checkpoint=tiny_sam_checkpoint)
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
    with_ema = predictions(SamAdaptPredictor.from_checkpoint(tmp_path / "ema.ckpt"), image)
    exported = predictions(SamAdaptPredictor.from_export(tmp_path / "adapter", tiny_sam_checkpoint), image)
    plain = predictions(SamAdaptPredictor.from_checkpoint(trained_runs["shallow"][1]), image)
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
