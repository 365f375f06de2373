"""The app served on a free loopback port with three tiny runs, shared by the API tests and the browser test."""

import threading
from pathlib import Path

import pytest

from samadapt.app.serve import load_models
from samadapt.app.server import App, make_server

SERVED = ("shallow", "ldit", "mixed")  # the page's list, in this order; its first two are chosen by default
MIXED_PROMPTS = '--model.train_prompts={"text": 1.0, "box+points+text": 1.0}'


def example_images(shapes_root: str) -> list[Path]:
    return sorted((Path(shapes_root) / "images" / "train2014").glob("*.jpg"))[:4]  # 160 x 120 each


@pytest.fixture(scope="package")
def app_runs(trained_runs, tmp_path_factory, tiny_sam_checkpoint, shapes_root, tiny_bert) -> dict:
    """The session's two text-only runs, shallow fusion (image encoded once) and L-DIT (text inside the encoder),
    plus "mixed": shallow fusion trained with text and with text + a point + a box, the one run that takes clicks.
    name -> (run folder, last.ckpt)."""
    from tests.helpers.tiny_runs import fit_and_test

    mixed = fit_and_test("demo/shallow_fusion", tmp_path_factory.mktemp("app_runs"), "mixed", tiny_sam_checkpoint,
                         shapes_root, tiny_bert, extra=(MIXED_PROMPTS,))
    return {**trained_runs, "mixed": mixed}


@pytest.fixture(scope="package")
def served(app_runs, shapes_root):
    """(base URL, App) of a server running in a thread for the package's tests."""
    models = load_models([app_runs[name][1] for name in SERVED], None, "cpu", "fp32")
    app = App(models, example_images(shapes_root))
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", app
    server.shutdown()
    server.server_close()
