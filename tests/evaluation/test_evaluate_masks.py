"""`samadapt evaluate-masks`: same numbers as in training for the same predictions, clear errors for bad folders."""

import json

import numpy as np
import pytest
import torch

from data_modules import Cod10kDataModule
from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.evaluation.evaluate_masks import evaluate_folders, write_mask_png
from samadapt.evaluation.protocol import binarize, eval_samples
from samadapt.evaluation.sod import to_uint8
from tests.conftest import TEST_SIZE
from tests.evaluation.test_evaluation import quiet_trainer, tiny_module


def test_folder_of_predictions_gives_the_in_training_numbers(tiny_sam_checkpoint, tiny_layouts, tmp_path):
    dm = Cod10kDataModule(tiny_layouts["data_modules.Cod10kDataModule"], image_size=TEST_SIZE, eval_batch_size=2)
    module = tiny_module(tiny_sam_checkpoint, eval_prompts="none")  # untrained: probabilities around 0.5
    quiet_trainer(tmp_path).test(module, dm)
    in_training = json.loads((tmp_path / "test_metrics.json").read_text())["results"][0]
    # The same predictions written as PNGs: probability maps for the SOD measures, binary masks for IoU.
    module.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader()[0]:
            low_res, _ = module(batch)
            for s in eval_samples(module.model.upsample(low_res), batch, "original"):
                write_mask_png(tmp_path / "probs" / f"{s.sample_id}.png", to_uint8(s.logits.sigmoid()))
                write_mask_png(tmp_path / "binary" / f"{s.sample_id}.png", binarize(s.logits, 0.5, "probs"))
                write_mask_png(tmp_path / "gt" / f"{s.sample_id}.png", s.target)
    sod = evaluate_folders(tmp_path / "probs", tmp_path / "gt", "sod")["metrics"]
    for key in ("MAE", "Sm", "wFm", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm"):
        assert sod[key] == pytest.approx(in_training[key], abs=1e-6), key
    referring = evaluate_folders(tmp_path / "binary", tmp_path / "gt", "referring")["metrics"]
    for key in ("oIoU", "mIoU", "P@0.5", "P@0.9"):
        assert referring[key] == pytest.approx(in_training[key], abs=1e-6), key


def write_pair(folder, stem, pred, gt):
    write_mask_png(folder / "pred" / f"{stem}.png", np.asarray(pred, np.uint8))
    write_mask_png(folder / "gt" / f"{stem}.png", np.asarray(gt, np.uint8))


def test_hand_computed_binary_and_probability_predictions(tmp_path):
    gt = np.zeros((4, 5), np.uint8)
    gt[:2] = 255  # 10 pixels
    binary = np.zeros((4, 5), np.uint8)
    binary[:1] = 255  # a 0/255 mask: 5 pixels, all inside -> IoU 0.5
    probs = np.where(gt > 0, 200, 100).astype(np.uint8)  # 0.78 / 0.39: IoU 1 at 0.5, IoU 0.5 at 0.35
    write_pair(tmp_path, "a", binary, gt)
    write_pair(tmp_path, "b_c2", probs, gt)
    out = evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring")
    assert out["count"] == 2 and out["metrics"]["mIoU"] == pytest.approx(0.75)
    assert out["metrics"]["oIoU"] == pytest.approx(15 / 20)
    low = evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring", threshold=0.35)["metrics"]
    assert low["mIoU"] == pytest.approx(0.5)
    write_pair(tmp_path / "01", "a", binary // 255, gt // 255)  # 0/1 masks on both sides
    zero_one = evaluate_folders(tmp_path / "01" / "pred", tmp_path / "01" / "gt", "referring", pred_01=True)
    assert zero_one["metrics"]["mIoU"] == pytest.approx(0.5)
    with pytest.raises(SamAdaptError, match="--pred-01"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring", pred_01=True)
    with pytest.raises(SamAdaptError, match="'a' does not end in _c<id>"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", "semantic")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"a": 1, "b_c2": 2}))
    out = tmp_path / "report.json"
    main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "semantic",
          "--classes", str(classes), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["classIoU_per_class"] == {"1": 0.5, "2": 1.0} and report["metrics"]["classIoU"] == 0.75


def cli_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate-masks", *map(str, args)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_unmatched_files_sizes_and_folders_are_named(tmp_path, capsys):
    gt = np.zeros((4, 5), np.uint8)
    write_pair(tmp_path, "img_1", gt, gt)
    write_mask_png(tmp_path / "gt" / "img_2.png", gt)
    err = cli_error(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert "samadapt: error:" in err and "img_2" in err and "no prediction" in err
    write_mask_png(tmp_path / "pred" / "img_2.png", np.zeros((5, 5), np.uint8))
    write_mask_png(tmp_path / "pred" / "img_3.png", gt)
    assert "img_3" in cli_error(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    (tmp_path / "pred" / "img_3.png").unlink()
    err = cli_error(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert "size mismatch for img_2" in err and "5x5" in err and "5x4" in err
    assert "prediction folder not found" in cli_error(capsys, "--pred", tmp_path / "nope", "--gt", tmp_path / "gt")
    (tmp_path / "empty").mkdir()
    assert "no .png files" in cli_error(capsys, "--pred", tmp_path / "empty", "--gt", tmp_path / "gt")
    assert not (tmp_path / "report.json").exists()


# ---- inputs that used to give oIoU 0.0 without a hint, or were read silently (issue 21) ---------------------------
def two_objects(folder, pred_scale=255, gt_scale=255):
    """Predictions equal to the ground truth, stored with the given foreground values."""
    for stem in ("a", "b"):
        gt = np.zeros((6, 8), np.uint8)
        gt[1:4, 2:6] = 1
        write_pair(folder, stem, gt * pred_scale, gt * gt_scale)


def test_zero_one_predictions_without_the_flag_warn_naming_it(tmp_path, capsys):
    two_objects(tmp_path, pred_scale=1)
    out = evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring")
    assert out["metrics"]["oIoU"] == 0.0  # what the user asked for is still computed ...
    assert len(out["warnings"]) == 1 and "--pred-01" in out["warnings"][0]  # ... with the reason and the fix
    assert evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring", pred_01=True)["metrics"]["oIoU"] == 1.0
    main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "referring"])
    err = capsys.readouterr().err
    assert err.count("samadapt: warning:") == 1 and "--pred-01" in err


def test_other_low_binary_predictions_warn_and_probability_maps_do_not(tmp_path):
    two_objects(tmp_path / "hundred", pred_scale=100)
    warned = evaluate_folders(tmp_path / "hundred" / "pred", tmp_path / "hundred" / "gt", "referring")
    assert "0/255" in warned["warnings"][0] and "0 and 100" in warned["warnings"][0]
    two_objects(tmp_path / "ok", pred_scale=255)
    assert "warnings" not in evaluate_folders(tmp_path / "ok" / "pred", tmp_path / "ok" / "gt", "referring")
    low = evaluate_folders(tmp_path / "hundred" / "pred", tmp_path / "hundred" / "gt", "referring", threshold=0.35)
    assert "warnings" not in low and low["metrics"]["oIoU"] == 1.0  # 100/255 is above 0.35: read as intended


def test_ground_truth_whose_foreground_would_vanish_is_refused(tmp_path, capsys):
    two_objects(tmp_path, gt_scale=100)
    err = cli_error(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert err.count("samadapt: error:") == 1 and "Traceback" not in err
    assert "ground truth" in err and "a.png" in err and "0, 100" in err and "0/255 or 0/1" in err


def test_colour_predictions_are_refused_like_colour_training_masks(tmp_path, capsys):
    from PIL import Image

    two_objects(tmp_path)
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[1:4, 2:6] = (255, 0, 0)  # a red mask: its grey value is 76, silently background before
    Image.fromarray(colour).save(tmp_path / "pred" / "a.png")
    err = cli_error(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert "a.png is a colour image with different R, G, B values" in err
    grey_rgb = np.repeat(np.asarray(Image.open(tmp_path / "pred" / "b.png"))[..., None], 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "pred" / "a.png")  # RGB with equal channels: read as grey
    assert evaluate_folders(tmp_path / "pred", tmp_path / "gt", "referring")["metrics"]["oIoU"] == 1.0
