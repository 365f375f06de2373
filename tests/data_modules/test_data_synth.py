"""The synthetic referring dataset: RefCOCO layout, unambiguous expressions, masks that match pixels."""

import json
import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from data_modules.datasets.refcoco import ann_to_mask
from data_modules.synthetic.referring import COLORS, SHAPES, main, write_synthetic_refcoco

SPATIAL = {"left", "right", "top", "bottom", "leftmost", "rightmost", "topmost", "bottommost"}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return write_synthetic_refcoco(tmp_path_factory.mktemp("synth"), num_train=12, num_eval=3, seed=1)


def _load(root):
    refs = pickle.loads((root / "shapes" / "refs(unc).p").read_bytes())
    coco = COCO(str(root / "shapes" / "instances.json"))
    return refs, coco


def test_layout_counts_and_splits(synth_root):
    assert (synth_root / "shapes" / "refs(unc).p").read_bytes()[:2] == b"\x80\x02"  # protocol 2
    refs, coco = _load(synth_root)
    assert len(coco.imgs) == 12 + 3 * 3
    for img in coco.imgs.values():
        assert img["file_name"] == f"COCO_train2014_{img['id']:012d}.jpg"
        with Image.open(synth_root / "images" / "train2014" / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) == (160, 120)
    assert {c["name"] for c in coco.cats.values()} == set(SHAPES)
    split_of_image = {}
    for r in refs:
        assert set(r) >= {"ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids", "sentences", "file_name"}
        assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] and 1 <= len(r["sentences"]) <= 2
        assert all(set(s) == {"sent", "raw", "tokens", "sent_id"} for s in r["sentences"])
        assert coco.anns[r["ann_id"]]["image_id"] == r["image_id"]
        assert split_of_image.setdefault(r["image_id"], r["split"]) == r["split"]  # one split per image
    assert set(split_of_image) == set(coco.imgs)  # every image has a referent
    assert Counter(split_of_image.values()) == {"train": 12, "val": 3, "testA": 3, "testB": 3}
    assert len({r["ref_id"] for r in refs}) == len(refs)
    assert len({s["sent_id"] for r in refs for s in r["sentences"]}) == sum(len(r["sentences"]) for r in refs)
    per_image = Counter(a["image_id"] for a in coco.anns.values())
    assert min(per_image.values()) >= 2 and max(per_image.values()) <= 5


def _centroid(coco, ann):
    ys, xs = np.nonzero(ann_to_mask(coco, ann))
    return xs.mean(), ys.mean()


def _matches(sentence, coco, image_id):
    """Rebuild the referent of a sentence from the annotations alone."""
    words = sentence.split()
    color = next(w for w in words if w in COLORS)
    shape = next(w for w in words if w in SHAPES)
    spatial = [w for w in words if w in SPATIAL]
    group = [a for a in coco.imgToAnns[image_id]
             if a["color"] == color and coco.cats[a["category_id"]]["name"] == shape]
    if not spatial:
        return [a["id"] for a in group]
    word = spatial[0].removesuffix("most")
    axis, sign = {"left": (0, -1), "right": (0, 1), "top": (1, -1), "bottom": (1, 1)}[word]
    cents = {a["id"]: _centroid(coco, a)[axis] * sign for a in group}
    return [i for i, c in cents.items() if all(c > o for j, o in cents.items() if j != i)]


def test_every_expression_names_exactly_its_referent(synth_root):
    refs, coco = _load(synth_root)
    for r in refs:
        for s in r["sentences"]:
            assert _matches(s["sent"], coco, r["image_id"]) == [r["ann_id"]], s["sent"]


def test_painted_pixels_match_ann_to_mask(synth_root):
    _, coco = _load(synth_root)
    for ann in coco.anns.values():
        info = coco.imgs[ann["image_id"]]
        img = np.asarray(Image.open(synth_root / "images" / "train2014" / info["file_name"]).convert("RGB"), float)
        mask = ann_to_mask(coco, ann).astype(bool)
        assert np.linalg.norm(img[mask].mean(0) - np.array(COLORS[ann["color"]])) < 30
        x, y, w, h = (int(v) for v in ann["bbox"])
        win = (slice(max(y - 3, 0), y + h + 4), slice(max(x - 3, 0), x + w + 4))
        painted = np.linalg.norm(img[win] - img[mask].mean(0), axis=-1) < 45
        iou = (painted & mask[win]).sum() / (painted | mask[win]).sum()
        assert iou > 0.95, (ann["id"], iou)


def test_deterministic_by_seed(tmp_path):
    a = write_synthetic_refcoco(tmp_path / "a", num_train=3, num_eval=1, seed=5)
    b = write_synthetic_refcoco(tmp_path / "b", num_train=3, num_eval=1, seed=5)
    main(["--out", str(tmp_path / "c"), "--num-train", "3", "--num-eval", "1", "--seed", "6"])
    for rel in ["shapes/refs(unc).p", "shapes/instances.json", "images/train2014/COCO_train2014_000000000004.jpg"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    ann_a = json.loads((a / "shapes/instances.json").read_text())["annotations"]
    ann_c = json.loads((tmp_path / "c/shapes/instances.json").read_text())["annotations"]
    assert ann_a != ann_c
