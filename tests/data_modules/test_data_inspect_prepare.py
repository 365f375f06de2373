"""`samadapt inspect-data` on the demo data and on each layout fixture, `samadapt prepare refcoco`, the data bench."""

import json
import pickle
from pathlib import Path

import pytest

from data_modules.datasets.safe_pickle import load_refs
from samadapt.cli import main
from samadapt.commands.bench_loading import data_loading_bench

REPO = Path(__file__).resolve().parents[2]
LAYOUT_EXPERIMENTS = {
    "data_modules.CocoLowDataDataModule": "coco_1_512/shallow_fusion",
    "data_modules.Ade20kDataModule": "ade20k_1_64/decoder_only",
    "data_modules.Cod10kDataModule": "cod10k/shallow_fusion",
    "data_modules.CelebAMaskDataModule": "celebamask/shallow_fusion",
    "data_modules.FolderDataModule": "folder/shallow_fusion",
}


def _inspect(capsys, tmp_path, experiment, *overrides):
    out = tmp_path / "grid.png"
    main(["inspect-data", "--config", str(REPO / "experiments/base.yaml"), "--config",
          str(REPO / f"experiments/{experiment}.yaml"), "--out", str(out), "--grid", "4", "--max-samples", "8",
          "--data.init_args.image_size=64", *overrides])
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and out.stat().st_size > 1000 and report["grid"] == str(out)
    return report


def test_inspect_data_on_demo_synthetic_data(shapes_root, tmp_path, capsys):
    report = _inspect(capsys, tmp_path, "demo/shallow_fusion", f"--data.init_args.root={shapes_root}")
    splits = report["splits"]
    assert set(splits) == {"train", "val", "test/testA", "test/testB"}
    assert splits["val"]["samples"] > 0 and splits["val"]["prompts"]["text"] == splits["val"]["inspected"]
    assert splits["train"]["vocabulary"]["size"] > 3 and splits["train"]["prompts"]["points_per_sample"] == {"1": 8}


@pytest.mark.parametrize("class_path", sorted(LAYOUT_EXPERIMENTS))
def test_inspect_data_on_each_layout(class_path, tiny_layouts, tmp_path, capsys):
    root = tiny_layouts[class_path]
    report = _inspect(capsys, tmp_path, LAYOUT_EXPERIMENTS[class_path], f"--data.init_args.root={root}")
    assert report["data"].endswith(class_path.rsplit(".", 1)[1])
    train = report["splits"]["train"]
    assert train["samples"] > 0 and train["prompts"]["foreground_points"] == train["inspected"]
    assert train["vocabulary"]["size"] >= 1
    if class_path.endswith("Cod10kDataModule"):
        assert train["handled"]["non-camouflaged (NonCAM) image left out of the usual subset"]["count"] == 1


def test_inspect_data_bad_override_is_one_clear_message(shapes_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect-data", "--config", str(REPO / "experiments/base.yaml"), "--config",
              str(REPO / "experiments/demo/shallow_fusion.yaml"), "--data.init_args.root", "x"])
    assert exit_info.value.code == 2 and "--data.init_args.<name>=<value>" in capsys.readouterr().err


def test_prepare_refcoco_writes_json_once_and_refuses_unsafe_pickles(tmp_path, capsys):
    sentences = [{"sent": "left dog", "sent_id": 4}]
    refs = [{"ref_id": 1, "ann_id": 2, "image_id": 3, "split": "val", "sentences": sentences}]
    for name in ("refcoco", "refcocog"):
        (tmp_path / name).mkdir()
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (tmp_path / "refcocog" / "refs(umd).p").write_bytes(pickle.dumps(refs, protocol=2))
    main(["prepare", "refcoco", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("written") == 2
    assert json.loads((tmp_path / "refcoco" / "refs(unc).json").read_text()) == refs
    assert load_refs(tmp_path / "refcocog" / "refs(umd).p") == refs  # the loader now reads the JSON
    main(["prepare", "refcoco", "--root", str(tmp_path)])
    assert capsys.readouterr().out.count("up to date") == 2
    (tmp_path / "refcoco+").mkdir()
    (tmp_path / "refcoco+" / "refs(unc).p").write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "refcoco", "--root", str(tmp_path)])
    assert exit_info.value.code == 2 and "refusing to load" in capsys.readouterr().err
    assert not (tmp_path / "refcoco+" / "refs(unc).json").exists()


def test_data_loading_bench_reports_rates_and_ratio():
    result = data_loading_bench(num_images=4, size=64, workers=(0,), rounds=1)
    for figures in (result, result["refcoco"]):  # the folder layout, then the RefCOCO layout
        row = figures["workers"]["0"]
        assert figures["decode_only_per_s"] > 0 and row["samples_per_s"] > 0
        assert row["ratio_to_decode"] == pytest.approx(row["per_worker"] / figures["decode_only_per_s"])
        assert figures["cached"]["0"]["later_epochs"]["samples_per_s"] > 0
    assert result["refcoco"]["samples"] > result["refcoco"]["images"] == 4  # several referents per image
