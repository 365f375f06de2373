"""16-bit and float images reach the model as the same 8-bit pixels in every reader (issue 21: RefCOCO came out
nearly white where the Folder reader and `segment` scaled correctly), and a decompression-bomb-sized image is named
in one line instead of PIL's traceback."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data_modules
from data_modules.pipeline.images import LoadReport, read_rgb
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.errors import SamAdaptError

SIZE = 64


def gray_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


# how the same gray values are stored: 8-bit reference, 16-bit PNG, 16-bit TIFF, float TIFF in 0..1 and 0..65535
STORED = {
    "png8": lambda g, p: Image.fromarray(g).save(p, format="PNG"),
    "png16": lambda g, p: Image.fromarray(g.astype(np.uint16) * 257).save(p, format="PNG"),
    "tiff16": lambda g, p: Image.fromarray(g.astype(np.uint16) * 257).save(p, format="TIFF"),
    "tiff_float01": lambda g, p: Image.fromarray(g.astype(np.float32) / 255).save(p, format="TIFF"),
    "tiff_float65535": lambda g, p: Image.fromarray(g.astype(np.float32) * 257).save(p, format="TIFF"),
}


def first_eval_sample(dm) -> dict:
    dm.setup("validate")
    return dm.val_set[0]


def first_eval_image(dm) -> Path:
    dm.setup("validate")
    base = getattr(dm.val_set, "dataset", dm.val_set)
    return Path(base.targets[0].image)


def reports_of(dm) -> dict:
    base = getattr(dm.val_set, "dataset", dm.val_set)
    return dict(base.report.counts)


def check_same_pixels_whatever_the_storage(make_dm, image: Path) -> None:
    """The first evaluation sample's image, with its file stored each way in STORED, equals the 8-bit one."""
    gray = gray_of(image)
    reference = None
    for name, store in STORED.items():
        store(gray, image)
        dm = make_dm()
        sample = first_eval_sample(dm)
        if reference is None:
            reference = sample["image"]
            assert reference[:, :8].float().mean() > 20, "the reference image is not black"
            continue
        assert sample["image"].equal(reference), f"{name}: pixels differ from the 8-bit file"
        assert reports_of(dm).get("16-bit image scaled to 8-bit RGB") == 1, name


@pytest.fixture(scope="module")
def refcoco_root(tmp_path_factory):
    return write_synthetic_refcoco(tmp_path_factory.mktemp("refcoco16"), num_train=2, num_eval=2, seed=0)


def test_refcoco_reads_a_real_16bit_png_like_its_8bit_pixels(refcoco_root, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(refcoco_root, root)

    def make_dm():
        return data_modules.RefCocoDataModule(str(root), dataset="shapes", image_size=SIZE)

    jpg = first_eval_image(make_dm())
    png = jpg.with_suffix(".png")  # a real .png named in instances.json, as a user's converted data would be
    Image.open(jpg).convert("L").save(png)
    instances = root / "shapes" / "instances.json"
    data = json.loads(instances.read_text())
    for image in data["images"]:
        if image["file_name"] == jpg.name:
            image["file_name"] = png.name
    instances.write_text(json.dumps(data))
    check_same_pixels_whatever_the_storage(make_dm, png)


def test_folder_reads_a_real_16bit_png_like_its_8bit_pixels(tiny_layouts, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(tiny_layouts["data_modules.FolderDataModule"], root)

    def make_dm():
        return data_modules.FolderDataModule(str(root), image_size=SIZE)

    jpg = first_eval_image(make_dm())
    png = jpg.with_suffix(".png")
    Image.open(jpg).convert("L").save(png)
    jpg.unlink()
    check_same_pixels_whatever_the_storage(make_dm, png)


@pytest.mark.parametrize("class_path", ["data_modules.CocoLowDataDataModule", "data_modules.Ade20kDataModule",
                                        "data_modules.Cod10kDataModule", "data_modules.CelebAMaskDataModule"])
def test_every_other_reader_scales_16bit_images_the_same_way(class_path, tiny_layouts, tmp_path):
    """The file keeps its .jpg name (split files list it): the readers go by content, as PIL does."""
    root = tmp_path / "d"
    shutil.copytree(tiny_layouts[class_path], root)
    cls = getattr(data_modules, class_path.rsplit(".", 1)[1])

    def make_dm():
        return cls(str(root), image_size=SIZE)

    check_same_pixels_whatever_the_storage(make_dm, first_eval_image(make_dm()))


def test_12bit_data_in_a_16bit_file_is_scaled_by_its_container_and_flagged(tmp_path):
    gray = np.arange(0, 4000, 40, dtype=np.uint16).reshape(10, 10)
    Image.fromarray(gray).save(tmp_path / "twelve.png")
    report = LoadReport()
    rgb = read_rgb(tmp_path / "twelve.png", report)
    assert rgb.max() == round(3960 * 255 / 65535)  # by bit depth, like every other 16-bit image
    assert any("12 bits or fewer" in what for what in report.counts)


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "big.jpg")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 48 x 64 = 3072 > 2 x 1000: PIL's bomb error
    for name in ("big.jpg", "big.png"):
        with pytest.raises(SamAdaptError, match=rf"{name} is too large to decode safely.*Downscale it"):
            read_rgb(tmp_path / name, LoadReport())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # above the warning size, below the error size
    report = LoadReport()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_rgb(tmp_path / "big.png", report).shape == (48, 64, 3)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]  # ours instead
    assert any("decompression-bomb warning size" in what for what in report.counts)
