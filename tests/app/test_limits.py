"""What one client can cost `samadapt serve`, and that every request gets a reply in valid JSON: Content-Length
checked before the body is read, a pixel budget, an image store bounded by bytes, a queue that answers 503
instead of resetting connections, and NaN prompts or scores that never reach the JSON."""

import io
import json
import socket
import time

import numpy as np
import pytest
from PIL import Image

from samadapt.app import limits
from samadapt.app.limits import BodyBudget, ByteStore, HttpRefusal, ModelQueue, decode_image
from samadapt.app.server import App, Handler
from tests.app.stand_in import StandInModel, burst, http_request, raw_request, serving, strict_json, tally


def image_file(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG", seed: int = 0) -> bytes:
    """An image file of `size` (w, h): a diagonal ramp, distinct bytes per seed; mode "1" is all black."""
    if mode == "1":
        image = Image.new("1", size)
    else:
        ramp = (np.arange(size[0])[None, :] + np.arange(size[1])[:, None] + seed) % 256
        image = Image.fromarray(ramp.astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def post(url: str, path: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    status, reply_headers, reply = raw_request(url, http_request("POST", path, data, headers))
    return status, reply_headers, strict_json(reply)


@pytest.fixture
def stand_in():
    """(URL, App) of a server with one stand-in model and the limits as shipped."""
    app = App([StandInModel()], [])
    with serving(app) as url:
        yield url, app


@pytest.mark.parametrize(("length", "status", "words"), [
    (None, 411, "needs a Content-Length"),
    ("-1", 400, "Content-Length '-1' is not one number of bytes"),  # read to the end of the stream before
    ("12abc", 400, "Content-Length '12abc' is not one number"),  # the connection closed without a reply before
    (str(200 * 2**20), 413, "The upload is 200.0 MB; the limit is 25 MB"),
])
def test_content_length_is_checked_before_the_body_is_read(stand_in, length, status, words):
    url, app = stand_in
    code, headers, reply = post(url, "/api/image", image_file((8, 8)), {"Content-Length": length})
    assert code == status and words in reply["error"] and headers["Connection"] == "close"
    assert len(app.images) == 0  # the body was never decoded


def test_a_refused_large_body_still_gets_its_reply(stand_in):
    """The client is still sending 30 MB when the server refuses them: it reads the 413, not a reset."""
    url, _ = stand_in
    code, _, reply = post(url, "/api/image", b"\0" * (30 * 2**20))
    assert code == 413 and "the limit is 25 MB" in reply["error"]


@pytest.mark.parametrize(("body", "words"), [
    (b"[]", "not an array"), (b'"text"', "not a string"), (b"null", "not null"), (b"3", "not a number"),
    (b"[" * 100_000, "nested too deeply"), (b'{"image_id": ', "not JSON"), (b"\xff\xfe{", "not JSON"),
    (b'{"image_id": NaN}', "holds NaN"), (b'{"text": Infinity}', "holds Infinity"),
])
def test_segment_bodies_that_are_not_a_json_object_get_400(stand_in, body, words):
    code, _, reply = post(stand_in[0], "/api/segment", body)
    assert code == 400 and words in reply["error"]


@pytest.mark.parametrize(("prompts", "words"), [
    ('"box": "nan,0,50,50"', "box 'nan,0,50,50' holds nan"),
    ('"box": "0,0,inf,50"', "holds inf"),
    ('"points": [[1e400, 5]], "labels": [1]', "point (inf, 5) holds inf"),  # JSON's 1e400 is infinity
    ('"points": [[5, 5]], "labels": [1e400]', "labels [1 or 0, ...]"),
])
def test_nan_or_infinite_prompts_are_refused(stand_in, prompts, words):
    url, _ = stand_in
    image_id = post(url, "/api/image", image_file((160, 120)))[2]["image_id"]
    code, _, reply = post(url, "/api/segment", f'{{"image_id": "{image_id}", {prompts}}}'.encode())
    assert code == 400 and words in reply["error"]


def test_a_nan_score_is_null_in_the_reply():
    with serving(App([StandInModel(score=float("nan"))], [])) as url:
        image_id = post(url, "/api/image", image_file((160, 120)))[2]["image_id"]
        code, _, reply = post(url, "/api/segment", {"image_id": image_id, "text": "x"})  # strict JSON parse
    assert code == 200 and reply["results"][0]["score"] is None


def test_unknown_methods_get_405_in_json(stand_in):
    code, headers, body = raw_request(stand_in[0], http_request("DELETE", "/api/info"))
    assert code == 405 and headers["Allow"] == "GET, POST" and "DELETE is not served" in strict_json(body)["error"]


def test_large_images_are_downscaled_on_arrival_and_masks_come_at_the_size_used(monkeypatch):
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 100 * 100)
    monkeypatch.setattr(limits, "MAX_DECODE_PIXELS", 400 * 400)
    with serving(App([StandInModel()], [])) as url:
        code, _, info = post(url, "/api/image", image_file((300, 200), fmt="JPEG"))
        assert code == 200 and (info["original_width"], info["original_height"]) == (300, 200)
        assert (info["width"], info["height"]) == (122, 81) and "Downscaled on arrival from 300x200" in info["note"]
        _, _, reply = post(url, "/api/segment", {"image_id": info["image_id"], "points": [[121, 80]], "labels": [1]})
        status, _, mask = raw_request(url, http_request("GET", reply["results"][0]["mask_url"]))
        assert status == 200 and Image.open(io.BytesIO(mask)).size == (122, 81)

        code, _, reply = post(url, "/api/image", image_file((500, 500)))  # a PNG has no cheap reduced decode
        assert code == 413 and "500x500 pixels" in reply["error"] and "Downscale it" in reply["error"]


def test_a_large_jpeg_decodes_at_a_reduced_scale_and_a_decompression_bomb_is_refused_unread(monkeypatch):
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 100 * 100)
    monkeypatch.setattr(limits, "MAX_DECODE_PIXELS", 400 * 400)
    rgb, original = decode_image(image_file((2400, 1600), mode="L", fmt="JPEG"))  # 3.8 MP decoded at 1/8: 0.06 MP
    assert original == (2400, 1600) and rgb.shape == (81, 122, 3)
    with pytest.raises(HttpRefusal, match="2400x1600 pixels"):  # a PNG must be decoded whole: refused
        decode_image(image_file((2400, 1600), mode="L"))
    with pytest.raises(HttpRefusal, match="196000000 pixels") as refused:  # over PIL's own bomb limit
        decode_image(image_file((14000, 14000), mode="1"))
    assert refused.value.status == 413


def test_sixteen_bit_images_are_scaled_not_clipped_to_white():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")  # mode I;16
    rgb, _ = decode_image(buffer.getvalue())
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]
    assert 100 < rgb.mean() < 155


def test_the_image_store_is_bounded_by_bytes(monkeypatch):
    one_image = 100 * 100 * 3
    monkeypatch.setattr(limits, "IMAGE_STORE_BYTES", 2 * one_image + 1)
    with serving(App([StandInModel()], [])) as url:
        ids = [post(url, "/api/image", image_file((100, 100), seed=i))[2]["image_id"] for i in range(3)]
        code, _, reply = post(url, "/api/segment", {"image_id": ids[0], "text": "x"})
        assert code == 400 and "dropped to make room" in reply["error"]
        assert post(url, "/api/segment", {"image_id": ids[2], "text": "x"})[0] == 200


def test_byte_store_drops_the_least_recently_used_and_keeps_the_newest_whatever_its_size():
    store = ByteStore(10)
    store.put("a", b"x" * 4)
    store.put("b", b"x" * 4)
    assert store.get("a") == b"xxxx"  # read: now the most recent
    store.put("c", b"x" * 4)
    assert "b" not in store and "a" in store and "c" in store and store.total == 8
    store.put("big", b"x" * 50)
    assert len(store) == 1 and "big" in store


def test_a_full_queue_answers_503_with_retry_after_instead_of_resetting():
    app = App([StandInModel(seconds=0.8)], [], queue=ModelQueue(limit=2, wait=30))
    with serving(app) as url:
        image_id = post(url, "/api/image", image_file((32, 32)))[2]["image_id"]
        request = http_request("POST", "/api/segment", json.dumps({"image_id": image_id, "text": "x"}).encode())
        outcomes = burst(url, [request] * 8)
    counts = tally(outcomes)
    assert set(counts) == {200, 503} and counts[200] >= 2, counts
    assert all(headers["Retry-After"] == "2" for status, headers in outcomes if status == 503)


def test_a_long_wait_for_the_model_is_refused_with_503():
    queue = ModelQueue(limit=5, wait=0.05)
    with queue.turn(), pytest.raises(HttpRefusal, match="no turn for the model within 0.05 s") as refused:
        with queue.turn():
            pass
    assert refused.value.status == 503 and queue.waiting == 0


@pytest.mark.parametrize("count", [50, 200])
def test_simultaneous_requests_are_queued_not_reset(served, shapes_root, count):
    """The trained tiny runs, `count` segment and info requests at the same moment: every one gets a reply."""
    from tests.app.conftest import example_images

    url, _ = served
    image_id = post(url, "/api/image", example_images(shapes_root)[0].read_bytes())[2]["image_id"]
    segment = http_request("POST", "/api/segment",
                           json.dumps({"image_id": image_id, "text": "the red circle", "runs": ["shallow"]}).encode())
    info = http_request("GET", "/api/info")
    counts = tally(burst(url, [segment, info] * (count // 2)))
    assert set(counts) <= {200, 503} and sum(counts.values()) == count, counts
    if count <= limits.MAX_QUEUED:
        assert counts[200] == count, counts


def test_a_body_that_stops_arriving_gets_408(monkeypatch):
    """A client that declares a body and stops sending it holds a thread only for the handler's timeout."""
    monkeypatch.setattr(Handler, "timeout", 1.5)  # per read: also the time the client has to send its headers
    with serving(App([StandInModel()], [])) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(http_request("POST", "/api/segment", b'{"te', {"Content-Length": "100"}))
            reply = b""
            while chunk := sock.recv(65536):  # the socket stays open: only the server's timeout can end this
                reply += chunk  # headers and body may arrive in separate segments: read until the server closes
    assert reply.startswith(b"HTTP/1.0 408") and b"did not arrive within 1.5 s" in reply


def test_bodies_in_flight_are_bounded_by_bytes():
    budget = BodyBudget(limit=10)
    with budget.hold(6), pytest.raises(HttpRefusal, match="too many uploads at once") as refused:
        with budget.hold(6):
            pass
    assert refused.value.status == 503 and budget.held == 0


def test_connections_past_the_limit_get_a_quick_503(monkeypatch):
    """Idle or slow connections hold at most MAX_CONNECTIONS threads; the next one is told to retry at once."""
    monkeypatch.setattr(limits, "MAX_CONNECTIONS", 2)
    with serving(App([StandInModel()], [])) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]  # send nothing
        try:
            time.sleep(0.3)  # both handlers started and hold their slots
            status, headers, body = raw_request(url, http_request("GET", "/api/info"))
            assert status == 503 and headers["Retry-After"] == "5" and "2 connections open" in body.decode()
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while (status := raw_request(url, http_request("GET", "/api/info"))[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
