"""The OpenCV decode path gives PIL's pixels, and every file it does not take still goes through PIL."""

import numpy as np
import pytest
from PIL import Image

from data_modules.pipeline.images import LoadReport, _opencv_decode, read_label, read_rgb
from samadapt.errors import SamAdaptError


def _texture(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(xx[..., None] / 4.0 + np.arange(3)) + rng.normal(0, 20, (h, w, 3)) + yy[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 chroma
def test_jpeg_pixels_equal_pil(tmp_path, subsampling):
    path = tmp_path / "a.jpg"
    Image.fromarray(_texture()).save(path, quality=90, subsampling=subsampling)
    fast = _opencv_decode(path, image=True)
    assert fast is not None, "a plain RGB JPEG takes the OpenCV path"
    assert np.array_equal(fast, np.asarray(Image.open(path).convert("RGB")))
    assert np.array_equal(read_rgb(path, LoadReport()), fast)


def test_grayscale_png_mask_equals_pil_and_other_masks_go_through_pil(tmp_path):
    label = (_texture()[..., 0] // 40).astype(np.uint8)  # label values 0..6
    Image.fromarray(label).save(tmp_path / "l.png")
    assert _opencv_decode(tmp_path / "l.png", image=False) is not None
    assert np.array_equal(read_label(tmp_path / "l.png", LoadReport()), label)
    palette = Image.fromarray(label, mode="L").convert("P")  # palette indices are the labels: PIL reads those
    palette.save(tmp_path / "p.png")
    assert _opencv_decode(tmp_path / "p.png", image=False) is None
    assert np.array_equal(read_label(tmp_path / "p.png", LoadReport()), np.asarray(Image.open(tmp_path / "p.png")))


def test_unusual_images_take_pil_and_are_counted(tmp_path):
    Image.fromarray(_texture()).convert("L").save(tmp_path / "g.jpg")
    assert _opencv_decode(tmp_path / "g.jpg", image=True) is None
    report = LoadReport()
    assert read_rgb(tmp_path / "g.jpg", report).shape == (48, 64, 3)
    assert report.counts["grayscale or palette image converted to RGB"] == 1


def test_truncated_jpeg_stops_with_the_file_named(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_texture(96, 128)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:-400])  # OpenCV would decode this, greying the missing rows
    assert _opencv_decode(path, image=True) is None
    with pytest.raises(SamAdaptError, match=r"cannot read image .*cut.jpg"):
        read_rgb(path, LoadReport())
