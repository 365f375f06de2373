"""COD10K, CelebAMask-HQ and folder datasets read from tiny datasets in their official layouts."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules import CelebAMaskDataModule, Cod10kDataModule, FolderDataModule
from samadapt.errors import MissingFileError, SamAdaptError
from tests.helpers.layouts import write_celebamask, write_cod10k, write_folder


@pytest.fixture(scope="module")
def cod_root(tmp_path_factory):
    return write_cod10k(tmp_path_factory.mktemp("cod"), num_train=4, num_test=3, noncam=1)


@pytest.fixture(scope="module")
def celeb_root(tmp_path_factory):
    return write_celebamask(tmp_path_factory.mktemp("celeb"), partition=(0, 0, 1, 2))


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("folder"))


def test_cod10k_camouflaged_subset_and_text_modes(cod_root):
    dm = Cod10kDataModule(str(cod_root), image_size=64)
    dm.setup(None)
    assert (len(dm.train_set), len(dm.val_set), dm.test_split_names) == (4, 3, ["Test"])
    assert dm.train_set.report.counts["non-camouflaged (NonCAM) image left out of the usual subset"] == 1
    assert {dm.train_set[i]["text"] for i in range(4)} == {"camouflaged object"}
    dm = Cod10kDataModule(str(cod_root), image_size=64, text_mode="class", text_template="a photo of a {}",
                          camouflaged_only=False)
    dm.setup("fit")
    texts = [dm.train_set[i]["text"] for i in range(len(dm.train_set))]
    assert len(texts) == 5 and "a photo of a stick insect" in texts and "a photo of a crab" in texts
    s = dm.train_set[0]
    assert s["mask"].sum() > 0 and set(s["mask"].unique().tolist()) == {0.0, 1.0}


def test_cod10k_missing_ground_truth_names_the_file(tmp_path, cod_root):
    root = tmp_path / "cod"
    shutil.copytree(cod_root, root)
    victim = sorted((root / "Train" / "GT_Object").glob("*-CAM-*.png"))[0]
    victim.unlink()
    with pytest.raises(MissingFileError, match=victim.name):
        Cod10kDataModule(str(root)).setup("fit")


def test_celebamask_official_partition_parts_and_merge_order(celeb_root):
    dm = CelebAMaskDataModule(str(celeb_root), image_size=64)
    dm.setup(None)
    # 5 parts per image; images 0, 1 train, 2 val, 3 test
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_sets[0])) == (10, 5, 5)
    by_id = {dm.val_set.targets[i].sample_id: dm.val_set[i] for i in range(len(dm.val_set))}
    assert by_id["2_l_eye"]["text"] == "left eye" and by_id["2_l_eye"]["class_id"] == 4
    skin, hair = by_id["2_skin"]["mask"].bool(), by_id["2_hair"]["mask"].bool()
    assert hair.any() and not (skin & hair).any()  # hair is painted after skin: it takes the overlap
    assert by_id["2_skin"]["orig_size"].tolist() == [512, 512]  # images are read at the masks' 512x512


def test_celebamask_missing_partition_file_is_named(tmp_path, celeb_root):
    root = tmp_path / "celeb"
    shutil.copytree(celeb_root, root)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(MissingFileError, match="list_eval_partition.txt"):
        CelebAMaskDataModule(str(root)).setup("fit")


def test_flip_swaps_left_and_right_in_text_mask_and_class(celeb_root):
    dm = CelebAMaskDataModule(str(celeb_root), image_size=512, hflip=True, parts=["l_eye"])
    dm.setup("fit")
    ds = dm.train_set
    ds.hflip_prob = 1.0
    s = ds[0]
    assert s["text"] == "right eye" and s["class_id"] == 5
    unflipped = CelebAMaskDataModule(str(celeb_root), image_size=512, parts=["l_eye"])
    unflipped.setup("fit")
    assert torch.equal(s["mask"], unflipped.train_set[0]["mask"].flip(-1))


def test_folder_texts_classes_and_bad_entries(folder_root, tmp_path):
    dm = FolderDataModule(str(folder_root), image_size=64, text_template="the {}")
    dm.setup(None)
    texts = json.loads((folder_root / "train" / "texts.json").read_text())
    assert len(dm.train_set) == 4 and dm.test_split_names == ["val"]
    assert dm.train_set[0]["text"] == f"the {texts['train_000']}"
    dm = FolderDataModule(str(folder_root), image_size=64, classes=["circle", "square", "triangle"])
    dm.setup("fit")
    assert dm.train_set[0]["class_id"] == ["circle", "square", "triangle"].index(texts["train_000"])
    with pytest.raises(SamAdaptError, match=r"class .* not in classes"):
        FolderDataModule(str(folder_root), classes=["banner"]).setup("fit")
    root = tmp_path / "f"
    shutil.copytree(folder_root, root)
    (root / "train" / "masks" / "train_001.png").unlink()
    with pytest.raises(MissingFileError, match="train_001"):
        FolderDataModule(str(root)).setup("fit")


def test_grayscale_rgba_and_16bit_images_are_converted_and_counted(folder_root, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(folder_root, root)
    images = root / "train" / "images"
    rgb = np.asarray(Image.open(images / "train_000.jpg"))
    (images / "train_000.jpg").unlink()
    Image.fromarray(rgb).convert("L").save(images / "train_000.png")
    (images / "train_001.jpg").unlink()
    Image.fromarray(rgb).convert("RGBA").save(images / "train_001.png")
    (images / "train_002.jpg").unlink()
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(images / "train_002.png")
    dm = FolderDataModule(str(root), image_size=96)
    dm.setup("fit")
    ds = dm.train_set
    samples = [ds[i] for i in range(3)]
    assert all(s["image"].shape == (3, 96, 96) for s in samples)
    counts = ds.report.counts
    assert counts["grayscale or palette image converted to RGB"] == 1
    assert counts["image with an alpha channel: alpha dropped"] == 1
    assert counts["16-bit image scaled to 8-bit RGB"] == 1
    assert abs(samples[2]["image"][0, :72].float().mean() - float(rgb[..., 0].mean())) < 1.0  # scaled, not clipped


def test_unreadable_image_names_the_file(folder_root, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(folder_root, root)
    (root / "train" / "images" / "train_000.jpg").write_bytes(b"not a jpeg")
    dm = FolderDataModule(str(root))
    dm.setup("fit")
    with pytest.raises(SamAdaptError, match=r"cannot read image .*train_000.jpg.*Re-download"):
        dm.train_set[0]
