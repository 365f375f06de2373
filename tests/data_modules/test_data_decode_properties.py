"""Property-based tests (hypothesis) of the data readers' decode and annotation paths (issue 21): whatever file or
annotation a user has, the reader gives a correct array or one SamAdaptError, never another exception."""

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data_modules.datasets.coco_annotations import EMPTY_RLE, NO_SEGMENTATION, OUTSIDE, annotation_mask, empty_reason
from data_modules.pipeline.images import LoadReport, read_binary_mask, read_rgb
from samadapt.errors import SamAdaptError

FAST = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "I", "I;16", "F", "CMYK", "YCbCr", "LAB", "HSV"]
FORMATS = ["PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF"]


SCRATCH = Path(tempfile.mkdtemp(prefix="decode-properties-"))  # one file per suffix, rewritten by every example


def teardown_module():
    shutil.rmtree(SCRATCH, ignore_errors=True)


def write(data: bytes, suffix: str = ".img") -> Path:
    path = SCRATCH / f"f{suffix}"
    path.write_bytes(data)
    return path


def decode_both(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """read_rgb and read_binary_mask of one file; None where a SamAdaptError was raised (any other error fails)."""
    out = []
    for read in (read_rgb, read_binary_mask):
        try:
            out.append(read(path, LoadReport()))
        except SamAdaptError:
            out.append(None)
    return out[0], out[1]


def check_shapes(rgb, mask, hw=None) -> None:
    if rgb is not None:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert hw is None or rgb.shape[:2] == hw
    if mask is not None:
        assert mask.dtype == bool and mask.ndim == 2
        assert hw is None or mask.shape == hw


@st.composite
def encoded_images(draw):
    """(bytes of an image file of a random mode, size and format, its (H, W), mode, format, pixels if lossless)."""
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = {"I": 70000, "I;16": 65535, "F": draw(st.sampled_from([1.0, 255.0, 65535.0]))}.get(mode, 255)
    values = rng.random((h, w, 4)) * scale
    im = Image.fromarray(values[..., :3].astype(np.uint8)).convert(mode) if mode not in ("I", "I;16", "F") else \
        Image.fromarray(values[..., 0].astype({"I": np.int32, "I;16": np.uint16, "F": np.float32}[mode]))
    buffer = io.BytesIO()
    try:
        im.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return None  # PIL cannot write this mode in this format: nothing to read back
    pixels = np.asarray(im.convert("RGB")) if fmt in ("PNG", "BMP", "TIFF") and mode in ("RGB", "L") else None
    return buffer.getvalue(), (h, w), mode, fmt, pixels


@FAST
@given(st.binary(max_size=600), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"GIF89a"]))
def test_random_bytes_give_pixels_or_one_error(data, header):
    rgb, mask = decode_both(write(header + data))
    check_shapes(rgb, mask)


@FAST
@given(encoded_images(), st.data())
def test_any_mode_size_and_format_gives_the_right_array_or_one_error(encoded, data):
    if encoded is None:
        return
    blob, hw, mode, fmt, pixels = encoded
    path = write(blob, "." + fmt.lower())
    rgb, mask = decode_both(path)
    assert rgb is not None, f"a readable {mode} {fmt} image must decode"
    check_shapes(rgb, mask, hw)
    if pixels is not None:
        assert np.array_equal(rgb, pixels)
    cut = data.draw(st.integers(1, max(1, len(blob) - 1)))
    rgb, mask = decode_both(write(blob[:cut], "." + fmt.lower()))  # truncated: pixels or one error
    check_shapes(rgb, mask, hw)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                    st.floats(-60, 60), st.booleans(), st.text(max_size=2), st.none())
polygon = st.lists(st.one_of(st.floats(-60, 60), st.integers(-60, 60)), min_size=0, max_size=14)
polygons = st.lists(st.one_of(polygon, st.lists(numbers, max_size=8), numbers), max_size=3)
rle = st.fixed_dictionaries({
    "size": st.one_of(st.just("hw"), st.lists(st.integers(-2, 40), max_size=3), numbers),
    "counts": st.one_of(st.lists(st.integers(-3, 400), max_size=12), st.text(max_size=12),
                        st.binary(max_size=12), numbers),
})
annotations = st.fixed_dictionaries(
    {"segmentation": st.one_of(polygons, rle, numbers, st.dictionaries(st.text(max_size=3), numbers, max_size=2))},
    optional={"area": numbers, "bbox": st.lists(numbers, max_size=5), "iscrowd": numbers})


@FAST
@given(annotations, st.integers(1, 40), st.integers(1, 40))
def test_any_annotation_gives_a_mask_of_the_image_size_or_one_error(ann, h, w):
    seg = ann["segmentation"]
    if isinstance(seg, dict) and seg.get("size") == "hw":
        seg["size"] = [h, w]
    try:
        mask = annotation_mask(ann, h, w, "instances.json annotation 1")
    except SamAdaptError:
        mask = None
    if mask is not None:
        assert mask.dtype == bool and mask.shape == (h, w)
    try:
        reason = empty_reason(ann, h, w, "instances.json annotation 1")
    except SamAdaptError:
        return
    if reason in (NO_SEGMENTATION, OUTSIDE, EMPTY_RLE):
        assert mask is not None and not mask.any(), reason
    if reason is None:
        assert mask is not None


@FAST
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 29)), min_size=1, max_size=60))
def test_rle_of_any_mask_decodes_to_that_mask(pixels):
    from pycocotools import mask as mask_utils

    drawn = np.zeros((30, 40), dtype=bool)
    for x, y in pixels:
        drawn[y, x] = True
    encoded = mask_utils.encode(np.asfortranarray(drawn.astype(np.uint8)))
    got = annotation_mask({"segmentation": {"size": [30, 40], "counts": encoded["counts"].decode()}}, 30, 40, "a")
    assert np.array_equal(got, drawn)
    assert empty_reason({"segmentation": [[x, y, x + 1, y, x + 1, y + 1] for x, y in pixels[:1]]}, 30, 40, "a") \
        in (None, "degenerate polygon (fewer than 3 points or zero area)")

