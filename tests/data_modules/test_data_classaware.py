"""The class-aware synthetic task and the Folder layout's fixed clicks (points.json)."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from data_modules.datasets.folder import FolderDataset
from data_modules.pipeline.binary import SampleOptions
from data_modules.synthetic.classaware import write_classaware_shapes
from samadapt.errors import SamAdaptError

CLASSES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def classaware(tmp_path_factory):
    return write_classaware_shapes(tmp_path_factory.mktemp("classaware"), num_train=4, num_eval=2, seed=0)


def test_each_click_sits_between_two_shapes_of_different_classes(classaware):
    split = classaware / "train"
    texts = json.loads((split / "texts.json").read_text())
    points = json.loads((split / "points.json").read_text())
    assert len(texts) == 8 and set(texts.values()) <= set(CLASSES)
    scenes = sorted({stem.split("_")[0] for stem in texts})
    for scene in scenes:
        stems = [s for s in texts if s.startswith(scene + "_")]
        assert len(stems) == 2 and texts[stems[0]] != texts[stems[1]]
        assert points[stems[0]] == points[stems[1]] and len(points[stems[0]]) == 1
        masks = [np.asarray(Image.open(split / "masks" / f"{s}.png")) > 0 for s in stems]
        assert not (masks[0] & masks[1]).any() and all(m.sum() > 100 for m in masks)
        x, y = points[stems[0]][0]
        # the click is half way between two 4-neighbour pixels, one of each shape
        around = {(math.floor(x), math.floor(y)), (math.ceil(x), math.ceil(y))}
        assert len(around) == 2
        assert {next(i for i, m in enumerate(masks) if m[py, px]) for px, py in around} == {0, 1}


def test_folder_dataset_prompts_with_the_file_clicks(classaware):
    dataset = FolderDataset(classaware, "val", SampleOptions(image_size=64, num_points=5), False, classes=CLASSES)
    points = json.loads((classaware / "val" / "points.json").read_text())
    sample = dataset[0]
    assert sample["points"].tolist() == [[c * 64 / 128 for c in points[sample["sample_id"]][0]]]
    assert sample["point_labels"].tolist() == [1]
    assert sample["class_id"] == CLASSES.index(sample["text"])


def test_bad_points_file_and_flip_are_clear_errors(classaware, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(classaware / "val", root / "val")
    with pytest.raises(SamAdaptError, match="hflip"):
        FolderDataset(root, "val", SampleOptions(image_size=64, hflip=True), True)
    (root / "val" / "points.json").write_text(json.dumps({"00000_circle": [[1, 2, 3]]}))
    with pytest.raises(SamAdaptError, match="points.json"):
        FolderDataset(root, "val", SampleOptions(image_size=64), False)
