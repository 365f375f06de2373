"""RefCOCO annotations that give an empty target are skipped with one warning naming them, and counted by
`samadapt inspect-data`; malformed refs and annotations stop with one line naming the file and the id (issue 21)."""

import json
import logging
import pickle
import shutil

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from data_modules.datasets.coco_annotations import annotation_mask
from data_modules.datasets.refcoco import RefCocoDataset
from data_modules.pipeline.binary import SampleOptions
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.commands.inspect_data import split_report
from samadapt.errors import SamAdaptError

BROKEN_POLYGONS = {  # what a careless conversion writes: the mask of each is empty
    "two points": [[10.0, 10.0, 40.0, 30.0]],  # pycocotools reads a 4-number polygon as a box
    "collinear": [[10.0, 10.0, 20.0, 20.0, 30.0, 30.0]],
    "outside": [[500.0, 500.0, 520.0, 500.0, 510.0, 530.0]],
    "sub-pixel": [[50.2, 50.2, 50.4, 50.2, 50.3, 50.4]],
}


@pytest.fixture(scope="module")
def refcoco_root(tmp_path_factory):
    return write_synthetic_refcoco(tmp_path_factory.mktemp("refcoco_ann"), num_train=2, num_eval=2, seed=0)


def copy(root, tmp_path):
    shutil.copytree(root, tmp_path / "r")
    return tmp_path / "r"


def refs_of(root) -> list[dict]:
    return pickle.loads((root / "shapes" / "refs(unc).p").read_bytes())


def write_refs(root, refs) -> None:
    (root / "shapes" / "refs(unc).p").write_bytes(pickle.dumps(refs))


def dataset(root, split="val", train=False):
    return RefCocoDataset(root, "shapes", "unc", split, None, SampleOptions(image_size=64), train)


def break_val_annotations(root) -> list[int]:
    """Give the first val referents the polygons of BROKEN_POLYGONS; their ann ids, in that order."""
    val_anns = [r["ann_id"] for r in refs_of(root) if r["split"] == "val"][: len(BROKEN_POLYGONS)]
    path = root / "shapes" / "instances.json"
    data = json.loads(path.read_text())
    by_id = {a["id"]: a for a in data["annotations"]}
    for ann_id, polygon in zip(val_anns, BROKEN_POLYGONS.values(), strict=True):
        by_id[ann_id]["segmentation"] = polygon  # "area" and "bbox" keep their old, positive values
    path.write_text(json.dumps(data))
    return val_anns


def test_empty_targets_are_skipped_with_one_warning_naming_them(refcoco_root, tmp_path, caplog):
    root = copy(refcoco_root, tmp_path)
    before = dataset(root)
    broken = break_val_annotations(root)
    with caplog.at_level(logging.WARNING):
        ds = dataset(root)
    kept = {t.source[0] for t in ds.targets}
    assert not kept & set(broken)
    assert len(ds.refs) == len(before.refs) - len(broken)
    for i in range(len(ds)):
        assert ds[i]["mask"].any(), "no empty target reaches training or evaluation"
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"skipped {len(broken)} of {len(before.refs)} referents" in warnings[0]
    for ann_id in broken:
        assert str(ann_id) in warnings[0]
    assert "degenerate polygon" in warnings[0] and "outside its image" in warnings[0]
    assert "docs/datasets.md" in warnings[0]
    handled = split_report(ds, max_samples=2)["handled"]
    counted = {k: v["count"] for k, v in handled.items() if k.startswith("referent skipped")}
    assert sum(counted.values()) == len(broken), handled
    assert counted["referent skipped: polygon outside its image"] == 1


def test_referent_without_sentence_text_names_file_and_ref(refcoco_root, tmp_path):
    root = copy(refcoco_root, tmp_path)
    refs = refs_of(root)
    victim = next(r for r in refs if r["split"] == "val")
    del victim["sentences"][0]["sent"]
    write_refs(root, refs)
    with pytest.raises(SamAdaptError, match=rf"refs\(unc\)\.p: ref {victim['ref_id']}: sentence 0 has no text 'sent'"):
        dataset(root)


@pytest.mark.parametrize("damage", [lambda r: r.pop("sentences"), lambda r: r.update(sentences="a string")])
def test_referent_without_sentence_list_names_file_and_ref(refcoco_root, tmp_path, damage):
    root = copy(refcoco_root, tmp_path)
    refs = refs_of(root)
    victim = next(r for r in refs if r["split"] == "train")
    damage(victim)
    write_refs(root, refs)
    with pytest.raises(SamAdaptError, match=rf"refs\(unc\)\.p: ref {victim['ref_id']} has no 'sentences' list"):
        dataset(root, split="train", train=True)


def test_referent_with_empty_sentence_list_is_skipped_and_counted(refcoco_root, tmp_path):
    root = copy(refcoco_root, tmp_path)
    refs = refs_of(root)
    victim = next(r for r in refs if r["split"] == "val")
    victim["sentences"] = []
    write_refs(root, refs)
    ds = dataset(root)
    assert ds.report.counts["referent skipped: no sentence"] == 1
    assert ds.report.examples["referent skipped: no sentence"] == f"ref {victim['ref_id']}"


def test_masks_equal_pycocotools_for_valid_polygons_and_rle():
    rng = np.random.default_rng(0)
    h, w = 37, 53
    for _ in range(50):
        points = rng.uniform(-5, 60, (int(rng.integers(3, 9)), 2)).ravel().tolist()
        expected = mask_utils.decode(mask_utils.frPyObjects([points], h, w))[..., 0].astype(bool)
        assert np.array_equal(annotation_mask({"segmentation": [points]}, h, w, "ann"), expected)
        drawn = rng.random((h, w)) < 0.3
        rle = mask_utils.encode(np.asfortranarray(drawn.astype(np.uint8)))
        for counts in (rle["counts"], rle["counts"].decode()):
            assert np.array_equal(annotation_mask({"segmentation": {"size": [h, w], "counts": counts}}, h, w, "a"),
                                  drawn)


@pytest.mark.parametrize("segmentation,words", [
    ([[1.0, 2.0, "x", 4.0, 5.0, 6.0]], "polygon 0"),
    ([[1.0, 2.0, 3.0]], "polygon 0"),
    ([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]], "finite"),
    ({"size": [10, 10], "counts": [50, 60]}, "add up to 110"),
    ({"size": [10, 12], "counts": [100]}, "RLE size"),
    ({"size": [10, 10], "counts": "\x01bad"}, "not RLE"),
    ("a string", "neither polygons nor RLE"),
])
def test_malformed_segmentation_is_one_error_naming_the_annotation(segmentation, words):
    with pytest.raises(SamAdaptError, match=words) as err:
        annotation_mask({"segmentation": segmentation}, 10, 10, "instances.json annotation 7")
    assert "instances.json annotation 7" in str(err.value)
