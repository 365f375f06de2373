"""What one client can cost `samadapt serve`: bytes read, pixels decoded, images kept, time waiting for the model.

Every limit ends in a reply with a status and a sentence (HttpRefusal), never a reset connection or a traceback.
"""

import io
import math
import threading
from collections import OrderedDict
from contextlib import contextmanager
from http import HTTPStatus

import numpy as np
from PIL import Image

from data_modules.pipeline.images import LoadReport, _pil_rgb
from samadapt.errors import SamAdaptError

MAX_UPLOAD_BYTES = 25 * 2**20  # one image upload
MAX_JSON_BYTES = 2**20  # one /api/segment request: prompts are a few hundred bytes
MAX_BODY_BYTES_IN_FLIGHT = 256 * 2**20  # request bodies held at once, across all connections
MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are downscaled on arrival to this many pixels
MAX_DECODE_PIXELS = 4 * MAX_IMAGE_PIXELS  # what may be decoded to get there (a JPEG decodes at 1/2..1/8 scale)
IMAGE_STORE_BYTES = 512 * 2**20  # decoded images kept for later prompts, least recently used dropped first
RESULT_STORE_BYTES = 64 * 2**20  # mask PNGs kept for download, least recently used dropped first
MAX_QUEUED = 64  # requests holding or waiting for the model; more are told to retry
MAX_WAIT_SECONDS = 60.0  # a request waiting longer for the model is told to retry
MAX_CONNECTIONS = 256  # connections served at once; more get a quick 503, so slow clients cannot pile up threads


class UploadConversions(LoadReport):
    """Counts the conversions of uploaded images (16-bit, alpha, grayscale) without logging them: the page shows
    the image as converted, and the readers' hint (`samadapt inspect-data`) does not apply to uploads."""

    def add(self, what: str, example, n: int = 1, announce: bool = True) -> None:
        super().add(what, example, n, announce=False)


UPLOADS = UploadConversions()


class HttpRefusal(SamAdaptError):
    """A request refused with an HTTP status other than 400 (413 too large, 503 busy, ...)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ByteStore:
    """A dict of bytes-bearing values; once their sizes sum past `limit` bytes, the least recently put or read
    are dropped first. The newest value is always kept, whatever its size. Safe to use from several threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key, value) -> None:
        with self._lock:
            if key in self._items:
                self.total -= nbytes(self._items.pop(key))
            self._items[key] = value
            self.total += nbytes(value)
            while self.total > self.limit and len(self._items) > 1:
                self.total -= nbytes(self._items.popitem(last=False)[1])

    def get(self, key, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def nbytes(value) -> int:
    return value.nbytes if isinstance(value, np.ndarray) else len(value)


class ModelQueue:
    """One request at a time uses the models; at most `limit` hold or wait for them, each for at most `wait`
    seconds. Past either, HttpRefusal 503 with Retry-After: the client learns to come back instead of being reset."""

    def __init__(self, limit: int = MAX_QUEUED, wait: float = MAX_WAIT_SECONDS) -> None:
        self.limit, self.wait = limit, wait
        self.waiting = 0
        self._count = threading.Lock()
        self._model = threading.Lock()

    @contextmanager
    def turn(self):
        with self._count:
            if self.waiting >= self.limit:
                raise HttpRefusal(HTTPStatus.SERVICE_UNAVAILABLE, f"The server is busy: {self.waiting} requests are "
                                  "waiting for the model. Try again in a few seconds.", retry_after=2)
            self.waiting += 1
        try:
            if not self._model.acquire(timeout=self.wait):
                raise HttpRefusal(HTTPStatus.SERVICE_UNAVAILABLE, f"The server is busy: no turn for the model within "
                                  f"{self.wait:g} s. Try again in a few seconds.", retry_after=5)
            try:
                yield
            finally:
                self._model.release()
        finally:
            with self._count:
                self.waiting -= 1


class BodyBudget:
    """Bytes of request bodies held at once across connections: past `limit`, new bodies are refused unread (503)."""

    def __init__(self, limit: int = MAX_BODY_BYTES_IN_FLIGHT) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, size: int):
        with self._lock:
            if self.held + size > self.limit:
                raise HttpRefusal(HTTPStatus.SERVICE_UNAVAILABLE, "The server is receiving too many uploads at "
                                  "once. Try again in a few seconds.", retry_after=2)
            self.held += size
        try:
            yield
        finally:
            with self._lock:
                self.held -= size


def fit_pixels(size: tuple[int, int], budget: int) -> tuple[int, int]:
    """(w, h) scaled down, aspect kept, to at most `budget` pixels; unchanged when it fits."""
    w, h = size
    if w * h <= budget:
        return size
    scale = math.sqrt(budget / (w * h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def decode_image(data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 uint8 RGB of at most MAX_IMAGE_PIXELS (downscaled when larger) and the file's own (width, height).

    The size is read from the header before any pixel is decoded; a JPEG larger than the budget decodes at a
    reduced scale in the DCT (PIL's draft), any other format must fit MAX_DECODE_PIXELS to be decoded at all."""
    if not data:
        raise SamAdaptError("No image: choose an example or upload an image file.")
    try:
        with Image.open(io.BytesIO(data)) as im:  # the header only; PIL refuses > 2x its MAX_IMAGE_PIXELS here
            original = im.size
            target = fit_pixels(original, MAX_IMAGE_PIXELS)
            if target != original and im.format == "JPEG":
                im.draft("RGB", target)  # never below the target size
            if im.size[0] * im.size[1] > MAX_DECODE_PIXELS:
                raise too_many_pixels(f"{original[0]}x{original[1]} pixels ({original[0] * original[1] / 1e6:.0f} MP)")
            im.load()
            rgb = _pil_rgb(im, "an upload", UPLOADS)  # as every reader converts: 16-bit scaled, alpha dropped
    except Image.DecompressionBombError as err:  # PIL: "Image size (N pixels) exceeds limit of ..."
        raise too_many_pixels(str(err).split(" exceeds")[0].replace("Image size ", "").strip("()")) from err
    except SamAdaptError:
        raise
    except Exception as err:  # PIL raises many types (OSError, ValueError, SyntaxError, ...) for a bad file
        raise SamAdaptError(f"That file is not an image this app can read ({err}); upload a PNG or JPEG.") from err
    if rgb.shape[1::-1] != target:
        rgb = np.asarray(Image.fromarray(rgb).resize(target, Image.Resampling.LANCZOS))
    return rgb, original


def too_many_pixels(what: str) -> HttpRefusal:
    bomb_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None  # PIL refuses more at Image.open
    jpeg = f" (a JPEG: {bomb_limit / 1e6:.0f} MP)" if bomb_limit else ""
    return HttpRefusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"The image has {what}; the largest this app decodes is {MAX_DECODE_PIXELS / 1e6:.0f} MP{jpeg}. "
                       f"Downscale it to about {MAX_IMAGE_PIXELS / 1e6:.0f} MP and upload it again.")
