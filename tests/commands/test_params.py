"""`samadapt params`: counts by part that add up, match what trains, and need no weight files."""

import json

import yaml

from samadapt.cli import main


def write_config(path, model):
    path.write_text(yaml.safe_dump({"model": model}))
    return path


def run_params(capsys, *configs):
    main(["params", *[a for c in configs for a in ("--config", str(c))]])
    return json.loads(capsys.readouterr().out)


def test_params_counts_parts_of_a_tiny_ptx(tmp_path, capsys, tiny_clip):
    config = write_config(tmp_path / "ptx.yaml", {
        "method": "sam_ptx", "sam_variant": "tiny", "sam_checkpoint": str(tmp_path / "absent.pth"), "image_size": 64,
        "method_options": {"width": 8, "blocks": [0, 1]}, "text_encoder": "clip",
        "text_options": {"model_cfg": tiny_clip[0], "pretrained": str(tmp_path / "absent_clip.pt")},
    })
    report = run_params(capsys, config)
    parts = report["parts"]
    assert "random" in report["weights"]["sam"] and "absent_clip.pt" in report["weights"]["text"]
    # tiny SAM: width 96; two MLP adapters 96->8->96; CLIP pooled 16 -> 96 per adapter
    assert parts["adapters"] == {"params": 2 * (96 * 8 + 8 + 8 * 96 + 96), "trainable": 2 * (96 * 8 + 8 + 8 * 96 + 96)}
    assert parts["text_projection"]["trainable"] == 2 * (16 * 96 + 96)
    assert parts["mask_decoder"]["trainable"] == parts["mask_decoder"]["params"] > 0
    assert parts["image_encoder"]["trainable"] == parts["prompt_encoder"]["trainable"] == 0
    assert parts["text_encoder"]["trainable"] == 0 and parts["text_encoder"]["params"] > 0
    assert report["total_params"] == sum(p["params"] for p in parts.values())
    assert report["trainable_params"] == sum(p["trainable"] for p in parts.values())
    assert report["total_params_without_text_encoder"] == report["total_params"] - parts["text_encoder"]["params"]


def test_later_config_overrides_and_base_comes_first(tmp_path, capsys, tiny_sam_checkpoint):
    write_config(tmp_path / "base.yaml", {"sam_variant": "tiny", "sam_checkpoint": tiny_sam_checkpoint,
                                          "image_size": 64, "method": "decoder_only"})
    exp = write_config(tmp_path / "exp.yaml", {"method": "parallel_adapter", "method_options": {"width": 4}})
    report = run_params(capsys, exp)
    assert report["configs"] == [str(tmp_path / "base.yaml"), str(exp)]
    assert report["method"] == "parallel_adapter" and report["weights"]["sam"] == tiny_sam_checkpoint
    assert set(report["parts"]) == {"image_encoder", "prompt_encoder", "mask_decoder", "adapters"}
    assert report["parts"]["adapters"]["params"] == 4 * (96 * 4 + 4 + 4 * 96 + 96)


def test_missing_config_is_one_clear_message(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["params", "--config", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_base_is_found_above_a_dataset_folder():
    from pathlib import Path

    from samadapt.commands.params import with_base

    experiments = Path(__file__).resolve().parents[2] / "experiments"
    ablation = [experiments / "refcoco/ldit.yaml", experiments / "refcoco/ldit/frozen.yaml"]
    assert with_base(ablation) == [experiments / "base.yaml", *ablation]
