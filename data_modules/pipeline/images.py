"""Read images and label maps, converting the unusual ones (grayscale, alpha, 16-bit) and counting each conversion.

Every conversion is counted in a LoadReport (shown by `samadapt inspect-data`) and logged once per kind,
so nothing changes silently; unreadable files stop with a message naming the file and the fix.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from samadapt.errors import MissingFileError, SamAdaptError

log = logging.getLogger(__name__)


class LoadReport:
    """Counts of handled cases ("grayscale image converted to RGB": 3) with one example file each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, what: str, example: str | Path, n: int = 1) -> None:
        if n <= 0:
            return
        if what not in self.counts:
            log.warning("%s (e.g. %s); further cases are counted, see `samadapt inspect-data`.", what, example)
            self.examples[what] = str(example)
        self.counts[what] += n

    def as_dict(self) -> dict[str, dict]:
        return {k: {"count": v, "example": self.examples[k]} for k, v in sorted(self.counts.items())}


def _open(path: Path, what: str, how_to_get: str, where: str, reduce_to: int | None = None) -> Image.Image:
    if not path.is_file():
        raise MissingFileError(path, what, how_to_get + where)
    try:
        im = Image.open(path)
        if reduce_to is not None and im.format == "JPEG":
            # DCT-domain downscaling while decoding: much faster, never below reduce_to pixels
            im.draft(im.mode, (reduce_to, reduce_to))
        im.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise SamAdaptError(
            f"cannot read {what} {path}: {e}. Re-download the file (it is truncated or not an image){where}."
        ) from e
    return im


_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def _opencv_decode(path: Path, image: bool) -> np.ndarray | None:
    """Pixels of a complete 8-bit RGB JPEG (`image`) or 8-bit grayscale PNG (a mask) decoded by OpenCV, else None.

    OpenCV and PIL decode these with the same libjpeg-turbo / zlib and give the same pixels (tests check it; both
    ignore EXIF orientation, as the masks of every dataset here are drawn on the stored pixels);
    OpenCV is faster and decodes straight into a numpy array, where PIL's asarray copies the pixels twice. Every
    other file (grayscale, CMYK, 16-bit, palette, alpha, or anything OpenCV cannot read) returns
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
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            if image and not (im.format == "JPEG" and im.mode == "RGB"):
                return None
            if not image and not (im.format == "PNG" and im.mode == "L" and "transparency" not in im.info):
                return None
    except (OSError, UnidentifiedImageError, SyntaxError):
        return None
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION if image else cv2.IMREAD_UNCHANGED
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit (or wider) values scaled to 0..255 by their bit depth, not clipped."""
    if arr.dtype == np.uint8:
        return arr
    top = 65535.0 if arr.max(initial=0) > 255 or arr.dtype == np.uint16 else 255.0
    return np.clip(arr.astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def read_rgb(
    path: str | Path, report: LoadReport, how_to_get: str = "", where: str = "", reduce_to: int | None = None
) -> np.ndarray:
    """HxWx3 uint8 RGB. `reduce_to`: let JPEG decode at a smaller scale (>= that size) when it is much larger.

    `where` (e.g. " (line 12 of labeled.txt)") is appended to error messages.
    """
    path = Path(path)
    if reduce_to is None and (fast := _opencv_decode(path, image=True)) is not None:
        return fast
    im = _open(path, "image", how_to_get, where, reduce_to)
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        report.add("16-bit image scaled to 8-bit RGB", path)
        gray = _to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        report.add("image with an alpha channel: alpha dropped", path)
    elif mode in ("L", "1", "P"):
        report.add("grayscale or palette image converted to RGB", path)
    else:
        report.add(f"{mode} image converted to RGB", path)
    return np.asarray(im.convert("RGB"))


def read_label(path: str | Path, report: LoadReport, how_to_get: str = "", where: str = "") -> np.ndarray:
    """HxW integer label map as stored (palette indices for P images, first channel for RGB ones)."""
    path = Path(path)
    if (fast := _opencv_decode(path, image=False)) is not None:
        return fast
    im = _open(path, "mask", how_to_get, where)
    if im.mode in ("RGB", "RGBA"):
        arr = np.asarray(im)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise SamAdaptError(
                f"mask {path} is a colour image with different R, G, B values; masks must be single-channel "
                f"label or binary PNGs. Convert it to a grayscale or palette PNG{where}."
            )
        report.add("RGB mask with equal channels read as grayscale", path)
        return arr[..., 0]
    if im.mode == "LA":
        report.add("mask with an alpha channel: alpha dropped", path)
        return np.asarray(im)[..., 0]
    return np.asarray(im)


def binary_from_label(label: np.ndarray, path: str | Path, report: LoadReport) -> np.ndarray:
    """A binary mask from a stored mask: 0/1 masks as they are, 0/255 (or 16-bit) masks thresholded at half range."""
    top = int(label.max(initial=0))
    if top <= 1:
        return label == 1
    half = 32768 if top > 255 else 128
    if ((label != 0) & (label != top)).any():
        report.add("mask with intermediate grey values thresholded at half range", path)
    return label >= half


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
