"""Read images and label maps, converting the unusual ones (grayscale, alpha, 16-bit) and counting each conversion.

Every conversion is counted in a LoadReport (shown by `samadapt inspect-data`) and logged once per kind,
so nothing changes silently; unreadable files stop with a message naming the file and the fix.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samadapt.errors import MissingFileError, SamAdaptError

log = logging.getLogger(__name__)


class LoadReport:
    """Counts of handled cases ("grayscale image converted to RGB": 3) with one example file each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, what: str, example: str | Path, n: int = 1, announce: bool = True) -> None:
        """Count `n` cases of `what`; the first one is logged unless the caller logs its own summary."""
        if n <= 0:
            return
        if what not in self.counts and announce:
            log.warning("%s (e.g. %s); further cases are counted, see `samadapt inspect-data`.", what, example)
        if what not in self.counts:
            self.examples[what] = str(example)
        self.counts[what] += n

    def as_dict(self) -> dict[str, dict]:
        return {k: {"count": v, "example": self.examples[k]} for k, v in sorted(self.counts.items())}


def _bomb_message(path: Path, what: str, err: Exception, where: str) -> str:
    return (f"{what} {path} is too large to decode safely ({err}); PIL refuses images above "
            f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels as possible decompression bombs. Downscale it{where}.")


def _open(path: Path, what: str, how_to_get: str, where: str, reduce_to: int | None = None) -> Image.Image:
    if not path.is_file():
        raise MissingFileError(path, what, how_to_get + where)
    try:
        with warnings.catch_warnings():  # images above PIL's warning size are counted instead (read_rgb)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        if reduce_to is not None and im.format == "JPEG":
            # DCT-domain downscaling while decoding: much faster, never below reduce_to pixels
            im.draft(im.mode, (reduce_to, reduce_to))
        im.load()
    except Image.DecompressionBombError as e:
        raise SamAdaptError(_bomb_message(path, what, e, where)) from None
    except Exception as e:  # PIL raises many types (OSError, ValueError, SyntaxError, struct.error ...) for bad files
        raise SamAdaptError(
            f"cannot read {what} {path}: {e}. Re-download the file (it is truncated or not an image){where}."
        ) from None
    return im


_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def _opencv_decode(path: Path, image: bool) -> np.ndarray | None:
    """Pixels of a complete 8-bit RGB JPEG (`image`) or 8-bit grayscale PNG (a mask) decoded by OpenCV, else None.

    OpenCV and PIL decode these with the same libjpeg-turbo / zlib and give the same pixels (tests check it; both
    ignore EXIF orientation, as the masks of every dataset here are drawn on the stored pixels);
    OpenCV is faster and decodes straight into a numpy array, where PIL's asarray copies the pixels twice. Every
    other file (grayscale, CMYK, 16-bit, palette, alpha, too large, or anything OpenCV cannot read) returns
    None and goes through PIL, which converts it (counted in the report) or names the problem. A file cut short
    has no end marker: it goes to PIL too, which stops on it, where OpenCV would fill the missing part with grey.
    """
    try:
        data = path.read_bytes()
    except OSError:  # missing or unreadable: PIL's path names the problem
        return None
    end = _JPEG_END if image else _PNG_END
    if not data.endswith(end):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                if image and not (im.format == "JPEG" and im.mode == "RGB"):
                    return None
                if not image and not (im.format == "PNG" and im.mode == "L" and "transparency" not in im.info):
                    return None
    except Exception:  # broken, or a decompression bomb: PIL's path names the problem
        return None
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION if image else cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    expected = 3 if image else 2
    return decoded if decoded is not None and decoded.ndim == expected else None


# 16-bit and wider images: the range their values fit decides the scale, the same for every reader.
# uint16 (PNG/TIFF "I;16*") is scaled by 65535 whatever its values; 32-bit integers ("I") by the smallest of
# 255 / 65535 / 2**31 - 1 that holds their maximum (Pillow opens some 16-bit files as "I"); floats ("F") by 1 when
# they lie in 0..1 (the float image convention), else like integers. Negative and non-finite values become 0.
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Values scaled to 0..255 by the range they were stored in (see above), not clipped."""
    if arr.dtype == np.uint8:
        return arr
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    top_value = float(values.max(initial=0))
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        top = 65535.0
    elif arr.dtype.kind == "f" and top_value <= 1.0:
        top = 1.0
    else:
        top = next((t for t in (255.0, 65535.0, 2.0**31 - 1) if top_value <= t), top_value)
    return np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _high_bit_gray(im: Image.Image, path: Path, report: LoadReport) -> np.ndarray:
    report.add("16-bit image scaled to 8-bit RGB", path)
    raw = np.asarray(im)
    if raw.dtype.kind == "u" and raw.dtype.itemsize == 2 and 0 < raw.max(initial=0) < 4096:
        report.add("16-bit image using 12 bits or fewer (max < 4096): scaled by 65535 it is dark; stretch it to "
                   "the 16-bit range or save it as 8-bit", path)
    gray = _to_uint8(raw)
    return np.repeat(gray[..., None], 3, axis=2)


def read_rgb(
    path: str | Path, report: LoadReport, how_to_get: str = "", where: str = "", reduce_to: int | None = None
) -> np.ndarray:
    """HxWx3 uint8 RGB. `reduce_to`: let JPEG decode at a smaller scale (>= that size) when it is much larger.

    `where` (e.g. " (line 12 of labeled.txt)") is appended to error messages.
    """
    path = Path(path)
    rgb = _opencv_decode(path, image=True) if reduce_to is None else None
    if rgb is None:
        im = _open(path, "image", how_to_get, where, reduce_to)
        try:
            rgb = _pil_rgb(im, path, report)
        except Exception as e:  # a mode PIL cannot convert (LAB, odd TIFF layouts, ...)
            raise SamAdaptError(f"cannot convert image {path} ({im.mode}) to RGB: {e}. Save it as an 8-bit RGB "
                                f"PNG or JPEG{where}.") from None
    limit = Image.MAX_IMAGE_PIXELS  # None when a user switched PIL's check off
    if limit and rgb.shape[0] * rgb.shape[1] > limit:
        report.add(f"image above {limit:,} pixels (PIL's decompression-bomb warning size) decoded: slow and "
                   "memory-hungry, downscale it", path)
    return rgb


def _pil_rgb(im: Image.Image, path: Path, report: LoadReport) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in _HIGH_BIT_MODES:
        return _high_bit_gray(im, path, report)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        report.add("image with an alpha channel: alpha dropped", path)
    elif mode in ("L", "1", "P"):
        report.add("grayscale or palette image converted to RGB", path)
    else:
        report.add(f"{mode} image converted to RGB", path)
    return np.asarray(im.convert("RGB"))


def read_label(path: str | Path, report: LoadReport, how_to_get: str = "", where: str = "") -> np.ndarray:
    """HxW integer label map as stored (palette indices for P images, first channel for RGB ones).

    Single-channel modes are read as stored (16-bit and 32-bit integers included); colour, alpha and float masks
    are converted where that is unambiguous (equal channels, alpha dropped) and refused otherwise.
    """
    path = Path(path)
    if (fast := _opencv_decode(path, image=False)) is not None:
        return fast
    im = _open(path, "mask", how_to_get, where)
    if im.mode in ("L", "P", "1") or im.mode.startswith("I"):
        return np.asarray(im)
    if im.mode in ("RGB", "RGBA"):
        arr = np.asarray(im)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise SamAdaptError(
                f"mask {path} is a colour image with different R, G, B values; masks must be single-channel "
                f"label or binary PNGs. Convert it to a grayscale or palette PNG{where}."
            )
        report.add("RGB mask with equal channels read as grayscale", path)
        return arr[..., 0]
    if im.mode in ("LA", "PA"):
        report.add("mask with an alpha channel: alpha dropped", path)
        return np.asarray(im)[..., 0]
    raise SamAdaptError(f"mask {path} is a {im.mode} image; masks must be single-channel label or binary PNGs "
                        f"(8 or 16 bit). Convert it to a grayscale or palette PNG{where}.")


def binary_from_label(label: np.ndarray, path: str | Path, report: LoadReport) -> np.ndarray:
    """A binary mask from a stored mask: 0/1 masks as they are, 0/255 (or 16-bit) masks thresholded at half range."""
    top = int(label.max(initial=0))
    if top <= 1:
        return label == 1
    half = 32768 if top > 255 else 128
    if ((label != 0) & (label != top)).any():
        report.add("mask with intermediate grey values thresholded at half range", path)
    return label >= half


def read_binary_mask(path: str | Path, report: LoadReport, how_to_get: str = "", where: str = "") -> np.ndarray:
    """HxW bool mask from a binary mask file (0/1, 0/255 or 16-bit)."""
    return binary_from_label(read_label(path, report, how_to_get, where), path, report)


def check_same_size(
    image: np.ndarray | tuple[int, int], mask: np.ndarray, image_path: Path, mask_path: Path, where: str = ""
) -> None:
    """Stop on a mask whose size differs from its image (or image (H, W)): nothing is resized behind the user's back."""
    h, w = tuple(image) if isinstance(image, tuple) else image.shape[:2]
    if (h, w) != mask.shape[:2]:
        raise SamAdaptError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{w}x{h}{where}; they do not belong together. Fix the pairing or resize "
            f"the mask to the image with nearest-neighbour interpolation."
        )
