"""A served App without a network (stand-in models answer at once, with a chosen score and delay), a raw HTTP
client that can send what urllib refuses to (a negative Content-Length, no Content-Length, any method), and a
burst of simultaneous requests counted by outcome."""

import json
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np

from samadapt.app.adapter import Answer
from samadapt.app.server import App, make_server


class StandInModel:
    """Answers as an AppModel does: the image's left half as the mask, `score` as its score, after `seconds`."""

    def __init__(self, name: str = "stand_in", score: float = 0.5, seconds: float = 0.0) -> None:
        self.name, self.score, self.seconds = name, score, seconds

    def info(self) -> dict:
        return {"name": self.name}

    def prepare(self, image_key: str, rgb: np.ndarray) -> bool:
        return True

    def segment(self, image_key: str, rgb: np.ndarray, prompts) -> Answer:
        time.sleep(self.seconds)
        mask = np.zeros(rgb.shape[:2], dtype=bool)
        mask[:, : rgb.shape[1] // 2] = True
        return Answer(self.name, "stand-in", mask, self.score)


@contextmanager
def serving(app: App):
    """The app's URL while a server thread answers it."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def raw_request(url: str, request: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send `request` as given, half-close, read the reply to its end: (status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before all of a refused body is sent
            pass
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return int(status_line.split()[1]), headers, body


def http_request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    """An HTTP/1.1 request's bytes; Content-Length is the body's unless `headers` says otherwise (None: leave out)."""
    fields = {"Host": "test", "Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v is not None)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def strict_json(body: bytes):
    """Parse as JSON proper: NaN and Infinity (which Python's json would accept) fail."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(body, parse_constant=refuse)


def burst(url: str, requests: list[bytes], timeout: float = 120.0) -> list:
    """Send all requests at the same moment, each on its own connection: per request (status, headers) for a
    reply whose body is strict JSON, else what went wrong ("reset", "timeout", "no reply", "not JSON", ...)."""
    outcomes: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def one(i: int) -> None:
        start.wait()
        try:
            status, headers, body = raw_request(url, requests[i], timeout)
        except (ConnectionResetError, BrokenPipeError):
            outcomes[i] = "reset"
        except TimeoutError:
            outcomes[i] = "timeout"
        except (OSError, ValueError, IndexError) as err:  # no status line: the connection closed without a reply
            outcomes[i] = f"no reply ({type(err).__name__})"
        else:
            try:
                strict_json(body)
                outcomes[i] = (status, headers)
            except ValueError:
                outcomes[i] = "not JSON"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def tally(outcomes: list) -> Counter:
    """Outcomes counted by status code (or by failure)."""
    return Counter(o[0] if isinstance(o, tuple) else o for o in outcomes)
