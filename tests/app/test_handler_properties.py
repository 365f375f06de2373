"""Property: whatever a client sends (any method, path, headers, body), `samadapt serve` replies with a status line,
never a 5xx other than 503, never a traceback; the JSON endpoints reply with strict JSON (no NaN) and a sentence
on refusal. Sent raw over a socket, so that malformed requests reach the server as they are."""

import io
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from samadapt.app.server import App
from tests.app.stand_in import StandInModel, http_request, raw_request, serving, strict_json

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PATH_CHARS = string.ascii_letters + string.digits + "/?&=.%-_~:;+,!$'()*[]@ " + "\x00é"
JSON_PATHS = ("/api/info", "/api/image", "/api/segment")


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    """(URL, id of an uploaded 40x30 image) of a stand-in app, shared by the examples."""
    with serving(App([StandInModel()], [])) as url:
        status, _, body = raw_request(url, http_request("POST", "/api/image", png(40, 30)))
        assert status == 200
        yield url, strict_json(body)["image_id"]


methods = st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
                    st.text(string.ascii_letters + "-", min_size=1, max_size=10))
paths = st.one_of(
    st.sampled_from(["/", "/index.html", *JSON_PATHS, "/api/image?run=stand_in", "/api/image?run=nobody&run=",
                     "/result/0123456789abcdef-mask.png", "/examples/x.jpg", "/examples/../../etc/passwd"]),
    st.text(PATH_CHARS, max_size=40).map(lambda text: "/" + text),
)
content_lengths = st.one_of(st.none(), st.integers(-5, 2**40).map(str), st.text(string.printable.strip(), max_size=8))
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def segment_requests(draw, image_id: str) -> bytes:
    """Requests shaped like the page's, with any values, some naming the uploaded image."""
    request = {key: draw(json_values) for key in draw(st.sets(st.sampled_from(
        ["image_id", "text", "points", "labels", "box", "runs"])))}
    if draw(st.booleans()):
        request["image_id"] = image_id
        request["points"] = draw(st.lists(st.lists(st.floats(-1e3, 1e3) | st.just(float("nan")), min_size=2,
                                                   max_size=2), max_size=3))
        request["labels"] = draw(st.lists(st.integers(-1, 2), max_size=3))
        request["box"] = draw(st.sampled_from(["", "1,1,20,20", "20,1,1,20", "nan,1,2,3", "1,2,3", "0,0,40,30"]))
    return json.dumps(request).encode()  # allow_nan: NaN and Infinity reach the server as literals


def check_reply(method: str, path: str, status: int, headers: dict, body: bytes) -> None:
    assert 200 <= status < 600
    assert status < 500 or status == 503, (status, body[:200])
    assert b"Traceback" not in body
    if method == "HEAD":
        return
    if path.split("?")[0] in JSON_PATHS or headers.get("Content-Type") == "application/json":
        payload = strict_json(body)
        assert isinstance(payload, dict)
        if status >= 400:
            assert isinstance(payload["error"], str) and payload["error"]


@SETTINGS
@given(method=methods, path=paths, length=content_lengths, body=st.binary(max_size=300),
       extra=st.dictionaries(st.text(string.ascii_letters + "-", min_size=1, max_size=12),
                             st.text(string.printable.strip(), max_size=20), max_size=3))
def test_any_request_gets_a_reply(server, method, path, length, body, extra):
    url, _ = server
    headers = {**extra, "Content-Length": length}
    status, reply_headers, reply = raw_request(url, http_request(method, path, body, headers))
    check_reply(method, path, status, reply_headers, reply)


@SETTINGS
@given(data=st.data())
def test_any_segment_body_gets_a_json_reply(server, data):
    url, image_id = server
    body = data.draw(st.one_of(segment_requests(image_id), json_values.map(lambda v: json.dumps(v).encode()),
                               st.binary(max_size=200)))
    status, headers, reply = raw_request(url, http_request("POST", "/api/segment", body))
    check_reply("POST", "/api/segment", status, headers, reply)
    assert status in (200, 400), (status, reply[:200])
