"""The web app's HTTP side, on the standard library: one page, a JSON API, images and masks kept in memory.

GET  /                      the page (page.html)
GET  /api/info              the runs (method, trained prompts, description, test score, precision) and example names
GET  /examples/<name>       an example image
POST /api/image[?run=A&run=B]  an image's bytes -> {"image_id", "width", "height"}; the named runs (default:
                            all) prepare it at once, the others when they first segment it
POST /api/segment           {"image_id", "text", "points", "labels", "box", "runs": [names]} -> one result per run
                            named (default: every run)
GET  /result/<id>.png       a mask PNG (0/255, the image's size as used) named in a result
Every request gets a reply, and every JSON reply is valid JSON (no NaN): errors the user can fix come back as
{"error": "<a plain sentence>"} with status 400, or 405/408/411/413 for the request itself, 503 with Retry-After
when the model's queue is full. What a client may cost (bytes, pixels, waiting): samadapt/app/limits.py.
"""

import hashlib
import io
import json
import logging
import socket
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from samadapt.app import limits
from samadapt.app.adapter import AppModel, Prompts
from samadapt.app.limits import BodyBudget, ByteStore, HttpRefusal, ModelQueue, decode_image
from samadapt.errors import SamAdaptError
from samadapt.inference.predictor import check_prompts
from samadapt.inference.segment import json_number, parse_numbers

PAGE = Path(__file__).with_name("page.html")
BODY_LIMITS = {"/api/image": limits.MAX_UPLOAD_BYTES, "/api/segment": limits.MAX_JSON_BYTES}
JSON_TYPE_NAMES = {list: "an array", str: "a string", type(None): "null", int: "a number", float: "a number",
                   bool: "true or false"}
log = logging.getLogger(__name__)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def refuse_constant(name: str):
    raise SamAdaptError(f"The request holds {name}; give finite numbers.")


def parse_request(body: bytes) -> dict:
    """A /api/segment body as a dict, or a sentence saying what is wrong with it."""
    try:
        request = json.loads(body or b"{}", parse_constant=refuse_constant)  # NaN, Infinity: refused
    except RecursionError as err:
        raise SamAdaptError("The request is nested too deeply to be a segment request.") from err
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
        raise SamAdaptError(f"The request is not JSON: {err}") from err
    if not isinstance(request, dict):
        raise SamAdaptError(f"The request must be a JSON object like {{\"image_id\": ..., \"text\": ...}}, not "
                            f"{JSON_TYPE_NAMES.get(type(request), type(request).__name__)}.")
    return request


def parse_prompts(request: dict, hw: tuple[int, int]) -> Prompts:
    """The page's prompts, checked against the image (the same checks as the predictor's)."""
    text = str(request.get("text") or "").strip() or None
    try:
        points = [tuple(float(v) for v in p) for p in request.get("points") or []]
        labels = [int(v) for v in request.get("labels") or []]
    except (TypeError, ValueError, OverflowError) as err:  # 1e400 is inf in JSON, and int(inf) overflows
        raise SamAdaptError(f"points must be [[x, y], ...] and labels [1 or 0, ...] ({err})") from err
    box_text = str(request.get("box") or "").replace(" ", "")
    box = tuple(parse_numbers(box_text, 4, "box")) if box_text else None
    check_prompts(hw, points or None, labels or None, [box] if box else None)
    return Prompts(text, points, labels, box)


class App:
    """The state shared by the request handlers. Decoding and model calls take turns in one queue."""

    def __init__(self, models: list[AppModel], examples: list[Path], queue: ModelQueue | None = None) -> None:
        self.models = models
        self.examples = {path.name: path for path in examples}
        self.images = ByteStore(limits.IMAGE_STORE_BYTES)
        self.results = ByteStore(limits.RESULT_STORE_BYTES)
        self.queue = queue or ModelQueue()
        self.bodies = BodyBudget()

    def info(self) -> dict:
        return {"models": [m.info() for m in self.models], "examples": list(self.examples)}

    def chosen(self, names) -> list[AppModel]:
        """The runs named, in the order given; every run when `names` is None."""
        if names is None:
            return self.models
        by_name = {m.name: m for m in self.models}
        if not isinstance(names, list) or not names:
            raise SamAdaptError("Choose at least one run to compare.")
        unknown = [str(n) for n in names if not isinstance(n, str) or n not in by_name]
        if unknown:
            raise SamAdaptError(f"No run named {unknown[0]!r} is served; choose among {', '.join(by_name)}.")
        return [by_name[n] for n in dict.fromkeys(names)]

    def add_image(self, data: bytes, runs: list[str] | None = None) -> dict:
        chosen = self.chosen(runs)
        image_id = hashlib.sha256(data).hexdigest()[:16]
        with self.queue.turn():  # decoding a large image costs as much as a prediction: one at a time
            rgb, (width, height) = decode_image(data)
            self.images.put(image_id, rgb)
            for model in chosen:
                model.prepare(image_id, rgb)
        reply = {"image_id": image_id, "width": rgb.shape[1], "height": rgb.shape[0]}
        if (width, height) != (rgb.shape[1], rgb.shape[0]):
            reply.update(original_width=width, original_height=height,
                         note=f"Downscaled on arrival from {width}x{height} to {rgb.shape[1]}x{rgb.shape[0]} "
                              f"(at most {limits.MAX_IMAGE_PIXELS / 1e6:.1f} MP): prompts and masks are in "
                              "these pixels.")
        return reply

    def segment(self, request: dict) -> dict:
        image_id = str(request.get("image_id") or "")
        rgb = self.images.get(image_id)
        if rgb is None:
            raise SamAdaptError("No image: choose an example or upload an image first (images not used for a "
                                "while are dropped to make room).")
        prompts = parse_prompts(request, rgb.shape[:2])
        chosen = self.chosen(request.get("runs"))
        with self.queue.turn():
            answers = [model.segment(image_id, rgb, prompts) for model in chosen]
        results = []
        for answer in answers:
            entry = {"model": answer.model, "message": answer.message, "refused": answer.mask is None,
                     "score": None if answer.score is None else json_number(answer.score),
                     "encoded_image": answer.encoded_image, "seconds": answer.seconds}
            if answer.mask is not None:
                key = hashlib.sha256(json.dumps([image_id, answer.model, request], sort_keys=True).encode())
                key = key.hexdigest()[:16]
                self.results.put(f"{key}-mask", png_bytes(answer.mask.astype(np.uint8) * 255))
                entry.update(mask_url=f"/result/{key}-mask.png", foreground=float(answer.mask.mean()),
                             mask_pixels=int(answer.mask.sum()))
            results.append(entry)
        return {"results": results}


Reply = tuple[int, bytes, str, dict]  # status, body, content type, extra headers


def json_reply(payload: dict, status: int = HTTPStatus.OK, headers: dict | None = None) -> Reply:
    return status, json.dumps(payload, allow_nan=False).encode(), "application/json", headers or {}


def error_reply(err: Exception) -> Reply:
    if isinstance(err, HttpRefusal):
        retry = {"Retry-After": str(err.retry_after)} if err.retry_after else {}
        return json_reply({"error": str(err)}, err.status, retry)
    return json_reply({"error": str(err)}, HTTPStatus.BAD_REQUEST)


class Handler(BaseHTTPRequestHandler):
    app: App  # set on the subclass make_server builds
    timeout = 30  # seconds a client has to send its request line, headers and body
    LINGER_SECONDS = 2.0  # after refusing a body unread: how long to drain it so the client can read the reply

    def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the URL, not every request
        pass

    def setup(self) -> None:
        self.turned_away = getattr(self.server.turned_away, "flag", False)  # over MAX_CONNECTIONS: answer 503 fast
        if self.turned_away:
            self.timeout = 2
        super().setup()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, an unknown method, headers too long), as JSON."""
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method other than GET and POST
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served here; use GET or POST."
        self.close_connection = True
        self.body_unread = self._declares_body()
        self._finish(json_reply({"error": message or HTTPStatus(code).phrase}, code,
                                {"Allow": "GET, POST"} if code == HTTPStatus.METHOD_NOT_ALLOWED else {}))

    def _declares_body(self) -> bool:
        headers = getattr(self, "headers", None)  # unset when the request line itself was refused
        return headers is not None and ("Transfer-Encoding" in headers
                                        or (headers.get("Content-Length") or "0").strip() != "0")

    def _write(self, reply: Reply) -> None:
        status, body, content_type, headers = reply
        try:
            self.send_response(status)
            for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                                "Cache-Control": "no-store", **headers}.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client left: nobody to tell
            self.close_connection = True

    def _answer(self, route) -> None:
        """Run a route and send what it returns; every failure becomes a reply, never a closed connection."""
        self.body_unread = self._declares_body()  # until a route reads it
        try:
            if self.turned_away:
                raise HttpRefusal(HTTPStatus.SERVICE_UNAVAILABLE, f"The server has {limits.MAX_CONNECTIONS} "
                                  "connections open. Try again in a few seconds.", retry_after=5)
            reply = route()
        except (SamAdaptError, TypeError, ValueError, OverflowError, RecursionError) as err:
            reply = error_reply(err)  # a sentence for the page, never a traceback
        except Exception:
            log.exception("samadapt serve: %s %s failed", self.command, self.path)
            reply = json_reply({"error": "The server failed on this request; its terminal shows why."},
                               HTTPStatus.INTERNAL_SERVER_ERROR)
        self._finish(reply)

    def _finish(self, reply: Reply) -> None:
        if self.body_unread:
            self.close_connection = True
        self._write(reply)
        if self.close_connection:  # always, under HTTP/1.0: a body longer than its Content-Length may be unread
            self._drain()

    def _drain(self) -> None:
        """Read and drop what the client is still sending, for a moment, so that closing does not reset the
        connection before it has read the reply (a socket closed with unread data sends RST). A client that has
        read its reply closes too, which ends this at once."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.LINGER_SECONDS
            self.connection.settimeout(0.2)
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass
        except OSError:
            pass

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _get(self) -> Reply:
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        if path in ("/", "/index.html"):
            return HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8", {}
        if path == "/api/info":
            return json_reply(self.app.info())
        example = self.app.examples.get(path.removeprefix("/examples/")) if path.startswith("/examples/") else None
        if example is not None:
            return HTTPStatus.OK, example.read_bytes(), "image/png" if example.suffix == ".png" else "image/jpeg", {}
        mask = self.app.results.get(path[8:-4]) if path.startswith("/result/") and path.endswith(".png") else None
        if mask is not None:
            return HTTPStatus.OK, mask, "image/png", {}
        return json_reply({"error": f"nothing at {path}"}, HTTPStatus.NOT_FOUND)

    def _post(self) -> Reply:
        path, _, query = self.path.partition("?")
        if path not in BODY_LIMITS:
            return json_reply({"error": f"nothing at {path}"}, HTTPStatus.NOT_FOUND)
        length = self._content_length(BODY_LIMITS[path])
        with self.app.bodies.hold(length):
            body = self._read_body(length)
            if path == "/api/image":
                return json_reply(self.app.add_image(body, urllib.parse.parse_qs(query).get("run")))
            return json_reply(self.app.segment(parse_request(body)))

    def _content_length(self, limit: int) -> int:
        """The body's declared size, checked before a byte of it is read."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HttpRefusal(HTTPStatus.LENGTH_REQUIRED, "Send the body with a Content-Length header; chunked "
                              "uploads are not read.")
        values = set(self.headers.get_all("Content-Length") or [])
        if not values:
            raise HttpRefusal(HTTPStatus.LENGTH_REQUIRED, "A POST needs a Content-Length header.")
        raw = values.pop().strip()
        if values or not (raw.isascii() and raw.isdigit()):
            raise HttpRefusal(HTTPStatus.BAD_REQUEST, f"Content-Length {raw!r} is not one number of bytes.")
        length = int(raw)
        if length > limit:
            raise HttpRefusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                              f"The {'upload' if limit == limits.MAX_UPLOAD_BYTES else 'request'} is "
                              f"{length / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB.")
        return length

    def _read_body(self, length: int) -> bytes:
        try:
            body = self.rfile.read(length)
        except TimeoutError as err:
            raise HttpRefusal(HTTPStatus.REQUEST_TIMEOUT, f"The body did not arrive within {self.timeout} s.") from err
        if len(body) < length:
            raise HttpRefusal(HTTPStatus.BAD_REQUEST, f"The body ended after {len(body)} of {length} bytes.")
        self.body_unread = False
        return body


class QueueingHTTPServer(ThreadingHTTPServer):
    """A thread per connection; a burst of connections waits in the kernel's listen queue instead of being reset
    (http.server's default backlog is 5). Past MAX_CONNECTIONS open at once, a connection is answered 503 within
    seconds (its handler reads with a 2 s timeout), so clients that send slowly cannot hold threads without end."""

    request_queue_size = 1024  # capped by the kernel's net.core.somaxconn
    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(limits.MAX_CONNECTIONS)
        self.turned_away = threading.local()  # per handler thread: no slot was free

    def process_request_thread(self, request, client_address) -> None:
        has_slot = self.slots.acquire(blocking=False)
        self.turned_away.flag = not has_slot
        try:
            super().process_request_thread(request, client_address)
        finally:
            if has_slot:
                self.slots.release()


def make_server(app: App, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0: a free one; read server.server_address), not yet serving."""
    handler = type("AppHandler", (Handler,), {"app": app})
    return QueueingHTTPServer((host, port), handler)
