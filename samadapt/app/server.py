"""The web app's HTTP side, on the standard library: one page, a JSON API, images and masks kept in memory.

GET  /                      the page (page.html)
GET  /api/info              the runs (method, trained prompts, description, test score) and example names
GET  /examples/<name>       an example image
POST /api/image[?run=A&run=B]  an image's bytes -> {"image_id", "width", "height"}; the named runs (default:
                            all) prepare it at once, the others when they first segment it
POST /api/segment           {"image_id", "text", "points", "labels", "box", "runs": [names]} -> one result per run
                            named (default: every run)
GET  /result/<id>.png       a mask PNG (0/255, the image's size) named in a result
Errors the user can fix come back as {"error": "<a plain sentence>"} with status 400.
"""

import hashlib
import io
import json
import threading
import urllib.parse
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samadapt.app.adapter import AppModel, Prompts
from samadapt.errors import SamAdaptError
from samadapt.inference.predictor import check_prompts
from samadapt.inference.segment import parse_numbers

PAGE = Path(__file__).with_name("page.html")
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
KEEP_IMAGES, KEEP_RESULTS = 16, 256  # in memory, oldest dropped first


class Bounded(OrderedDict):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    if not data:
        raise SamAdaptError("No image: choose an example or upload an image file.")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as err:
        raise SamAdaptError(f"That file is not an image this app can read ({err}); upload a PNG or JPEG.") from err


def parse_prompts(request: dict, hw: tuple[int, int]) -> Prompts:
    """The page's prompts, checked against the image (the same checks as the predictor's)."""
    text = str(request.get("text") or "").strip() or None
    points = [tuple(float(v) for v in p) for p in request.get("points") or []]
    labels = [int(v) for v in request.get("labels") or []]
    box_text = str(request.get("box") or "").replace(" ", "")
    box = tuple(parse_numbers(box_text, 4, "box")) if box_text else None
    check_prompts(hw, points or None, labels or None, [box] if box else None)
    return Prompts(text, points, labels, box)


class App:
    """The state shared by the request handlers. Model calls take a lock: one prediction at a time."""

    def __init__(self, models: list[AppModel], examples: list[Path]) -> None:
        self.models = models
        self.examples = {path.name: path for path in examples}
        self.images: Bounded = Bounded(KEEP_IMAGES)
        self.results: Bounded = Bounded(KEEP_RESULTS)
        self.lock = threading.Lock()

    def info(self) -> dict:
        return {"models": [m.info() for m in self.models], "examples": list(self.examples)}

    def chosen(self, names) -> list[AppModel]:
        """The runs named, in the order given; every run when `names` is None."""
        if names is None:
            return self.models
        by_name = {m.name: m for m in self.models}
        if not isinstance(names, list) or not names:
            raise SamAdaptError("Choose at least one run to compare.")
        unknown = [str(n) for n in names if n not in by_name]
        if unknown:
            raise SamAdaptError(f"No run named {unknown[0]!r} is served; choose among {', '.join(by_name)}.")
        return [by_name[n] for n in dict.fromkeys(names)]

    def add_image(self, data: bytes, runs: list[str] | None = None) -> dict:
        chosen = self.chosen(runs)
        rgb = decode_image(data)
        image_id = hashlib.sha256(data).hexdigest()[:16]
        self.images.put(image_id, rgb)
        with self.lock:
            for model in chosen:
                model.prepare(image_id, rgb)
        return {"image_id": image_id, "width": rgb.shape[1], "height": rgb.shape[0]}

    def segment(self, request: dict) -> dict:
        image_id = str(request.get("image_id") or "")
        if image_id not in self.images:
            raise SamAdaptError("No image: choose an example or upload an image first.")
        rgb = self.images[image_id]
        prompts = parse_prompts(request, rgb.shape[:2])
        chosen = self.chosen(request.get("runs"))
        results = []
        with self.lock:
            answers = [model.segment(image_id, rgb, prompts) for model in chosen]
        for answer in answers:
            entry = {"model": answer.model, "message": answer.message, "refused": answer.mask is None,
                     "score": answer.score, "encoded_image": answer.encoded_image, "seconds": answer.seconds}
            if answer.mask is not None:
                key = hashlib.sha256(json.dumps([image_id, answer.model, request], sort_keys=True).encode())
                key = key.hexdigest()[:16]
                self.results.put(f"{key}-mask", png_bytes(answer.mask.astype(np.uint8) * 255))
                entry.update(mask_url=f"/result/{key}-mask.png", foreground=float(answer.mask.mean()),
                             mask_pixels=int(answer.mask.sum()))
            results.append(entry)
        return {"results": results}


class Handler(BaseHTTPRequestHandler):
    app: App  # set on the subclass make_server builds

    def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the URL, not every request
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(self.app.info())
        elif path.startswith("/examples/") and path[len("/examples/"):] in self.app.examples:
            example = self.app.examples[path[len("/examples/"):]]
            self._send(HTTPStatus.OK, example.read_bytes(), "image/png" if example.suffix == ".png" else "image/jpeg")
        elif path.startswith("/result/") and path.endswith(".png") and path[8:-4] in self.app.results:
            self._send(HTTPStatus.OK, self.app.results[path[8:-4]], "image/png")
        else:
            self._json({"error": f"nothing at {path}"}, HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            self._json({"error": f"The upload is {length / 2**20:.0f} MB; the limit is "
                                 f"{MAX_UPLOAD_BYTES // 2**20} MB."}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        try:
            if path == "/api/image":
                self._json(self.app.add_image(body, urllib.parse.parse_qs(query).get("run")))
            elif path == "/api/segment":
                try:
                    request = json.loads(body or b"{}")
                except json.JSONDecodeError as err:
                    raise SamAdaptError(f"The request is not JSON: {err}") from err
                self._json(self.app.segment(request))
            else:
                self._json({"error": f"nothing at {self.path}"}, HTTPStatus.NOT_FOUND)
        except (SamAdaptError, TypeError, ValueError) as err:  # a sentence for the page, never a traceback
            self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)


def make_server(app: App, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0: a free one; read server.server_address), not yet serving."""
    handler = type("AppHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
