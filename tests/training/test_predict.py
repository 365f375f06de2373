"""`samadapt predict`: every sample's mask PNG at its image's own size, one index, and test's numbers."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from samadapt.cli import main
from tests.commands.test_cli import configs, data_class_path, tiny_overrides
from tests.helpers.tiny_runs import fit_and_test


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def original_sizes(datamodule_class, **init_args) -> dict[str, tuple[int, int]]:
    """sample id -> (width, height) of its image, read by the DataModule itself (not by the writer)."""
    import data_modules

    dm = getattr(data_modules, datamodule_class)(**init_args, image_size=64)
    dm.setup("test")
    sizes = {}
    for split, ds in zip(dm.test_split_names, dm.test_sets, strict=True):
        for i in range(len(ds)):
            sample = ds[i]
            h, w = sample["orig_size"].tolist()
            sizes[f"{split}/{sample['sample_id']}"] = (w, h)
    return sizes


def check_pngs(out, rows, sizes):
    assert rows and len(rows) == len(sizes)
    for row in rows:
        png = Image.open(out / row["mask"])
        assert png.size == sizes[f"{row['split']}/{row['sample_id']}"]  # the original image's, not the model's
        assert set(np.unique(np.asarray(png)).tolist()) <= {0, 255}


def test_predict_writes_original_size_masks_whose_iou_is_tests(tiny_sam_checkpoint, shapes_root, tiny_bert,
                                                              tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run, ckpt = fit_and_test("demo/shallow_fusion", tmp_path, "shallow", tiny_sam_checkpoint, shapes_root, tiny_bert)
    out = tmp_path / "predicted"
    main(["predict", *configs("demo/shallow_fusion"), *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert),
          "--trainer.logger=false", f"--ckpt_path={ckpt}", f"--out={out}"])
    assert str(out) in capsys.readouterr().out
    rows = read_csv(out / "predictions.csv")
    check_pngs(out, rows, original_sizes("RefCocoDataModule", root=shapes_root, dataset="shapes",
                                         test_splits=["testA"], max_eval_samples=4))
    assert {r["split"] for r in rows} == {"testA"} and all(r["text"] and r["prompts"] == "text" for r in rows)
    assert all(math.isfinite(float(r["score"])) for r in rows)  # SAM's IoU head: unbounded, never NaN
    tested = {r["sample_id"]: float(r["IoU"]) for r in read_csv(run / "test_per_sample.csv")}
    assert {r["sample_id"]: float(r["IoU"]) for r in rows} == pytest.approx(tested, abs=1e-9)


def test_predict_on_a_folder_dataset_with_box_prompts(tiny_sam_checkpoint, tiny_layouts, tiny_bert, tmp_path,
                                                      monkeypatch):
    """Without --out the predictions go into the run folder; a box prompt is written in original pixels."""
    monkeypatch.chdir(tmp_path)
    root = tiny_layouts["data_modules.FolderDataModule"]
    args = [*configs("folder/decoder_only"), *tiny_overrides(tiny_sam_checkpoint, "", tiny_bert, data_root=root),
            "--trainer.logger=false", "--trainer.default_root_dir=run"]
    main(["test", *args])
    main(["predict", *args])
    out = tmp_path / "run" / "predictions"
    rows = read_csv(out / "predictions.csv")
    check_pngs(out, rows, original_sizes("FolderDataModule", root=root))
    assert all(r["prompts"] == "box" and len(json.loads(r["box"])) == 4 for r in rows)
    x0, y0, x1, y1 = json.loads(rows[0]["box"])
    assert 0 <= x0 < x1 <= int(rows[0]["width"]) + 1 and 0 <= y0 < y1 <= int(rows[0]["height"]) + 1
    tested = {r["sample_id"]: float(r["IoU"]) for r in read_csv(tmp_path / "run" / "test_per_sample.csv")}
    assert {r["sample_id"]: float(r["IoU"]) for r in rows} == pytest.approx(tested, abs=1e-9)


@pytest.mark.parametrize("experiment", ["coco_1_512/decoder_only", "ade20k_1_64/decoder_only",
                                        "cod10k/decoder_only", "celebamask/decoder_only"])
def test_predict_runs_on_every_datamodule(experiment, tiny_sam_checkpoint, tiny_layouts, tiny_bert, tmp_path,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    class_path = data_class_path(experiment)
    root = tiny_layouts[class_path]
    main(["predict", *configs(experiment), *tiny_overrides(tiny_sam_checkpoint, "", tiny_bert, data_root=root),
          "--trainer.logger=false", "--out=out"])
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    check_pngs(tmp_path / "out", rows, original_sizes(class_path.split(".")[-1], root=root, max_eval_samples=4))
    assert all(0.0 <= float(r["IoU"]) <= 1.0 for r in rows)
