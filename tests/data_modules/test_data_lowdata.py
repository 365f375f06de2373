"""COCO low-data and ADE20K low-data read from tiny datasets in the UniMatch layouts."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules import Ade20kDataModule, CocoLowDataDataModule
from data_modules.datasets.refcoco import ann_to_mask, load_coco
from samadapt.errors import MissingFileError, SamAdaptError
from tests.helpers.layouts import write_ade20k, write_coco_lowdata

S = 96  # the fixtures are 96x72: letterboxing at 96 keeps every pixel


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco_lowdata(tmp_path_factory.mktemp("coco"), num_train=4, num_val=3)


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory):
    return write_ade20k(tmp_path_factory.mktemp("ade"), num_train=4, num_val=3)


def _coco(root, **kw):
    dm = CocoLowDataDataModule(str(root), image_size=S, **kw)
    dm.setup(None)
    return dm


def test_coco_instance_one_sample_per_object_masks_equal_pycocotools(coco_root):
    dm = _coco(coco_root)
    for folder, ds in (("train2017", dm.train_set), ("val2017", dm.val_set)):
        coco = load_coco(coco_root / "annotations" / f"instances_{folder}.json")
        assert len(ds) == len(coco.anns)
        for i in range(len(ds)):
            s = ds[i]
            ann = coco.anns[int(s["sample_id"].split("_a")[1])]
            assert torch.equal(s["mask"][0, :72].bool(), torch.from_numpy(ann_to_mask(coco, ann).astype(bool)))
            assert s["text"] == coco.cats[ann["category_id"]]["name"]
            assert s["points"].shape == (5, 2)  # SAM-PTx's 5 points by default
    assert dm.test_split_names == ["val"] and len(dm.test_sets[0]) == len(dm.val_set)


def test_coco_semantic_one_sample_per_class_present_with_ignore(coco_root):
    dm = _coco(coco_root, mode="semantic", text_template="a photo of a {}")
    expected = 0
    for line in (coco_root / "splits/coco/1_512/labeled.txt").read_text().split("\n"):
        if line:
            label = np.asarray(Image.open(coco_root / line.split()[1]))
            expected += len(set(np.unique(label).tolist()) - {0, 255})
    assert len(dm.train_set) == expected
    s = dm.val_set[0]
    assert s["text"].startswith("a photo of a ") and s["ignore"][0, 0].all()  # the ignore strip of row 0
    assert not (s["mask"].bool() & s["ignore"]).any()


def test_coco_zero_area_and_crowd_are_counted_not_dropped_silently(tmp_path, coco_root):
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    path = root / "annotations/instances_train2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["area"] = 0.0
    data["annotations"][1]["iscrowd"] = 1
    path.write_text(json.dumps(data))
    ds = _coco(root).train_set
    assert len(ds) == len(data["annotations"]) - 2
    counts = ds.report.as_dict()
    assert counts["annotation with zero area or no polygon skipped"]["count"] == 1
    assert counts["crowd annotation excluded (set include_crowd to keep)"]["count"] == 1


def test_split_line_with_missing_file_names_file_and_line(tmp_path, coco_root):
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    split = root / "splits/coco/1_512/labeled.txt"
    split.write_text(split.read_text() + "train2017/000000099999.jpg masks/train2017/000000099999.png\n")
    expected = r"line 5 of .*labeled.txt not found: .*000000099999.jpg.*remove the line"
    with pytest.raises(MissingFileError, match=expected):
        _coco(root)


def test_missing_split_files_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingFileError, match="labeled.txt.*UniMatch"):
        CocoLowDataDataModule(str(tmp_path)).setup("fit")


def test_ade20k_counts_class_names_and_ignore(ade_root):
    dm = Ade20kDataModule(str(ade_root), image_size=S)
    dm.setup(None)
    texts = {dm.train_set[i]["text"] for i in range(len(dm.train_set))}
    assert "wall" in texts and texts <= {"wall", "ball", "box", "mirror"}
    s = dm.val_set[0]
    assert s["ignore"][0, 69:72].all() and s["class_id"] in (0, 27, 41, 119)


def test_ade20k_class_outside_list_and_original_labels(tmp_path, ade_root):
    root = tmp_path / "ade"
    shutil.copytree(ade_root, root)
    first = root / (root / "splits/ade20k/1_64/labeled.txt").read_text().split()[1]
    label = np.asarray(Image.open(first)).copy()
    label[5, 5] = 150  # as in the original ADEChallengeData2016 PNGs (1..150)
    Image.fromarray(label).save(first)
    with pytest.raises(SamAdaptError, match=r"line 1 of .*class id 150.*reduce_zero_label"):
        Ade20kDataModule(str(root)).setup("fit")
    dm = Ade20kDataModule(str(root), image_size=S, reduce_zero_label=True)
    dm.setup("fit")  # 0 -> ignore, c -> c - 1: the background (0) becomes ignore, box (41) becomes "base" (40)
    texts = {dm.train_set[i]["text"] for i in range(len(dm.train_set))}
    assert "wall" not in texts and "base" in texts and "box" not in texts


def test_mask_size_differing_from_image_stops_with_both_files(tmp_path, ade_root):
    root = tmp_path / "ade"
    shutil.copytree(ade_root, root)
    first = root / (root / "splits/ade20k/1_64/labeled.txt").read_text().split()[1]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(first)
    dm = Ade20kDataModule(str(root), image_size=S)
    dm.setup("fit")
    with pytest.raises(SamAdaptError, match=r"10x10 but its image .*96x72.*line 1"):
        dm.train_set[0]
