"""RefCocoDataset on synthetic data in the real layout: sample contract, geometry, errors, hflip."""

import json
import logging
import pickle
import shutil

import numpy as np
import pytest
import torch

from data_modules.datasets.refcoco import RefCocoDataset, ann_to_mask
from data_modules.pipeline.binary import SampleOptions
from data_modules.pipeline.transforms import letterbox, swap_left_right
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.errors import MissingFileError, SamAdaptError

S = 64  # 160x120 -> scale 0.4, content 64 wide x 48 high


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_refcoco(tmp_path_factory.mktemp("refcoco"), num_train=20, num_eval=3, seed=0)


def _refs(root, split):
    return [r for r in pickle.loads((root / "shapes" / "refs(unc).p").read_bytes()) if r["split"] == split]


def _ds(root, split="train", train=False, image_dir=None, **options):
    return RefCocoDataset(root, "shapes", "unc", split, image_dir, SampleOptions(image_size=S, **options), train)


def test_lengths_train_one_per_ref_eval_one_per_sentence(root):
    assert len(_ds(root, split="train", train=True)) == len(_refs(root, "train"))
    val_refs = _refs(root, "val")
    ds = _ds(root, split="val")
    assert len(ds) == sum(len(r["sentences"]) for r in val_refs)
    ids = [ds[i]["sample_id"] for i in range(len(ds))]
    assert ids == [f"{r['ref_id']}_{s['sent_id']}" for r in val_refs for s in r["sentences"]]


def test_sample_contract_and_letterbox_geometry(root):
    ds = _ds(root, split="val", num_points=3)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, S, S) and s["image"].dtype == torch.uint8
        assert s["mask"].shape == (1, S, S) and s["mask"].dtype == torch.uint8
        assert set(s["mask"].unique().tolist()) == {0.0, 1.0}
        assert s["points"].shape == (3, 2) and s["points"].dtype == torch.float32
        assert s["point_labels"].dtype == torch.long and (s["point_labels"] == 1).all()
        assert s["box"].shape == (4,) and s["box"].dtype == torch.float32
        assert isinstance(s["text"], str) and s["text"] and isinstance(s["sample_id"], str)
        assert s["orig_size"].tolist() == [120, 160] and s["orig_size"].dtype == torch.long
        assert 0 <= s["image"].min() and s["image"].max() <= 255 and s["image"].max() > 50
        # content is 48 rows x 64 cols at top-left; the rest is zero padding
        assert (s["image"][:, 48:] == 0).all() and (s["mask"][:, 48:] == 0).all()
        assert s["image"][:, :48].abs().sum(0).gt(0).float().mean() > 0.99
        m = s["mask"][0]
        for x, y in s["points"].long().tolist():
            assert m[y, x] == 1
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert s["box"].tolist() == [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]


def test_eval_prompts_are_deterministic(root):
    a, b = _ds(root, split="val", num_points=2), _ds(root, split="val", num_points=2, seed=0)
    for i in range(len(a)):
        assert torch.equal(a[i]["points"], a[i]["points"]) and torch.equal(a[i]["points"], b[i]["points"])
        assert torch.equal(a[i]["box"], b[i]["box"])


def test_train_reads_are_random_and_box_stays_in_image(root):
    ds = _ds(root, split="train", train=True, num_points=4, box_jitter=0.3)
    torch.manual_seed(0)
    draws = [ds[0] for _ in range(6)]
    assert any(not torch.equal(d["points"], draws[0]["points"]) for d in draws)
    for d in draws:
        x0, y0, x1, y1 = d["box"].tolist()
        assert 0 <= x0 <= x1 <= S - 1 and 0 <= y0 <= y1 <= 47


def test_hflip_swaps_left_right_and_flips_mask(root):
    ds = _ds(root, split="train", train=True, hflip=True)
    ds.hflip_prob = 1.0
    idx = next(i for i, r in enumerate(ds.refs) if "left" in r["sentences"][0]["sent"].split())
    ref = ds.refs[idx]
    s = ds[idx]
    assert s["text"] in {swap_left_right(x["sent"]) for x in ref["sentences"]}
    assert "right" in s["text"].split() and "left" not in s["text"].split()
    mask = ann_to_mask(ds.coco, ds.coco.anns[ref["ann_id"]])
    image = np.zeros((*mask.shape, 3), np.uint8)
    flipped = letterbox(image, mask[:, ::-1].copy(), S).mask
    assert torch.equal(s["mask"], flipped)
    assert not torch.equal(s["mask"], letterbox(image, mask, S).mask)
    m = s["mask"][0]
    for x, y in s["points"].long().tolist():
        assert m[y, x] == 1


def test_swap_left_right_words():
    assert swap_left_right("Left man, rightmost dog on the RIGHT") == "Right man, leftmost dog on the LEFT"
    assert swap_left_right("bright lefty leftover") == "bright lefty leftover"


def test_unknown_split_lists_present_splits(root):
    with pytest.raises(SamAdaptError) as e:
        _ds(root, split="testC")
    assert all(name in str(e.value) for name in ("train", "val", "testA", "testB", "testC"))


def test_missing_paths_raise_missing_file_error(root, tmp_path):
    with pytest.raises(MissingFileError, match=r"refs\(unc\)\.p"):
        RefCocoDataset(tmp_path, dataset="shapes")
    (tmp_path / "shapes").mkdir()
    shutil.copy(root / "shapes" / "refs(unc).p", tmp_path / "shapes")
    with pytest.raises(MissingFileError, match="instances.json"):
        RefCocoDataset(tmp_path, dataset="shapes")
    shutil.copy(root / "shapes" / "instances.json", tmp_path / "shapes")
    with pytest.raises(MissingFileError, match="train2014") as e:
        RefCocoDataset(tmp_path, dataset="shapes")
    assert "README" in str(e.value)
    (tmp_path / "imgs").mkdir()
    ds = _ds(tmp_path, split="val", image_dir=str(tmp_path / "imgs"))
    with pytest.raises(MissingFileError, match=r"imgs/COCO_train2014_\d+\.jpg"):
        ds[0]


def test_json_refs_and_empty_objects_skipped(root, tmp_path, caplog):
    (tmp_path / "shapes").mkdir()
    refs = pickle.loads((root / "shapes" / "refs(unc).p").read_bytes())
    inst = json.loads((root / "shapes" / "instances.json").read_text())
    val = [r for r in refs if r["split"] == "val"]
    empty_ann = next(a for a in inst["annotations"] if a["id"] == val[0]["ann_id"])
    empty_ann["segmentation"], empty_ann["area"] = [], 0.0
    (tmp_path / "shapes" / "refs(unc).json").write_text(json.dumps(refs))
    (tmp_path / "shapes" / "instances.json").write_text(json.dumps(inst))
    with caplog.at_level(logging.WARNING):
        ds = _ds(tmp_path, split="val", image_dir=str(root / "images" / "train2014"))
    assert len(ds) == sum(len(r["sentences"]) for r in val[1:])
    assert "skipped 1 " in caplog.text


def test_colour_jitter_is_opt_in_and_train_only(root):
    assert _ds(root, split="val", color_jitter=True).augment is None
    ds = _ds(root, split="train", train=True, color_jitter=True)
    s = ds[0]
    assert s["image"].shape == (3, S, S) and (s["image"][:, 48:] == 0).all()


@pytest.mark.parametrize("mode", ["I;16", "L"])
def test_16_bit_and_grayscale_images_are_read_as_the_folder_reader_reads_them(root, tmp_path, mode):
    from PIL import Image

    from data_modules.datasets.folder import FolderDataset

    copy = tmp_path / "refcoco"
    shutil.copytree(root, copy)
    inst = json.loads((copy / "shapes" / "instances.json").read_text())
    ref = _refs(root, "val")[0]
    info = next(i for i in inst["images"] if i["id"] == ref["image_id"])
    info["file_name"] = info["file_name"].replace(".jpg", ".png")
    (copy / "shapes" / "instances.json").write_text(json.dumps(inst))
    gray = np.tile(np.linspace(10, 200, 160).astype(np.uint8), (120, 1))
    pixels = gray.astype(np.uint16) * 257 if mode == "I;16" else gray  # 16-bit: the same grey levels scaled up
    image_file = copy / "images" / "train2014" / info["file_name"]
    Image.fromarray(pixels).save(image_file)
    assert Image.open(image_file).mode == mode

    folder = tmp_path / "folder" / "train"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    shutil.copy(image_file, folder / "images" / "x.png")
    Image.fromarray(np.full((120, 160), 255, np.uint8)).save(folder / "masks" / "x.png")

    refcoco = _ds(copy, split="val")
    by_folder = FolderDataset(tmp_path / "folder", "train", SampleOptions(image_size=S), False)[0]["image"]
    by_refcoco = refcoco[0]["image"]
    assert torch.equal(by_refcoco, by_folder)
    assert abs(by_refcoco[:, :48].float().mean().item() - float(gray.mean())) < 2  # not turned nearly white
    if mode == "I;16":
        assert refcoco.report.counts["16-bit image scaled to 8-bit RGB"] == 1


def test_eval_prompts_are_seeded_by_sample_id_and_content_hw_is_the_letterboxed_image(root):
    ds, numbered_differently = _ds(root, split="val", num_points=3), _ds(root, split="val", num_points=3)
    numbered_differently.targets.reverse()
    by_id = {s["sample_id"]: s for s in (numbered_differently[i] for i in range(len(ds)))}
    for i in range(len(ds)):
        s = ds[i]
        assert torch.equal(s["points"], by_id[s["sample_id"]]["points"])
        assert s["content_hw"].tolist() == [48, 64] and s["content_hw"].dtype == torch.long
