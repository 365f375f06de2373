"""`samadapt serve`'s API: bad input refused in sentences, the chosen runs only, each image encoded once when the
method allows it, and prompts a run was not trained with refused. The page itself: tests/app/test_page.py."""

import json
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from samadapt.app.adapter import AppModel, Prompts
from tests.app.conftest import example_images

TEXT = "the red circle"


def post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_api_refuses_bad_input_in_sentences(served, shapes_root):
    url, _ = served
    status, payload = post(f"{url}/api/segment", {"text": TEXT})
    assert status == 400 and payload["error"].startswith("No image")
    status, payload = post(f"{url}/api/image", b"not an image")
    assert status == 400 and "not an image" in payload["error"]
    status, info = post(f"{url}/api/image", example_images(shapes_root)[0].read_bytes())
    assert status == 200 and (info["width"], info["height"]) == (160, 120)
    status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "text": TEXT, "box": "90,10,20,60"})
    assert status == 400 and "needs x0 <= x1" in payload["error"]
    status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "points": [[170, 10]],
                                                   "labels": [1]})
    assert status == 400 and "outside the 160x120 image" in payload["error"]
    status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "text": ""})
    assert status == 200 and all(r["refused"] and r["message"].startswith("Give a prompt")
                                 for r in payload["results"])


def test_image_encoded_once_per_image_unless_the_encoder_reads_text(served, shapes_root):
    url, app = served
    calls = {}
    for model in app.models:
        calls[model.name] = [0]
        handle = model.predictor.model.sam.image_encoder.register_forward_hook(
            lambda *_, n=model.name: calls[n].__setitem__(0, calls[n][0] + 1))
        model._hook = handle
    try:
        _, info = post(f"{url}/api/image", example_images(shapes_root)[2].read_bytes())
        for text in ("the red circle", "the blue square", "the green triangle"):
            status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "text": text})
            assert status == 200 and not any(r["refused"] for r in payload["results"])
    finally:
        for model in app.models:
            model._hook.remove()
    assert calls == {"shallow": [1], "ldit": [3], "mixed": [1]}


def test_only_the_chosen_runs_prepare_the_image_and_segment(served, shapes_root):
    url, app = served
    image = example_images(shapes_root)[3].read_bytes()
    status, payload = post(f"{url}/api/image?run=nobody", image)
    assert status == 400 and "No run named 'nobody'" in payload["error"] and "shallow, ldit, mixed" in payload["error"]
    status, info = post(f"{url}/api/image?run=ldit&run=shallow", image)
    assert status == 200
    assert [m.name for m in app.models if m._image_key == info["image_id"]] == ["shallow", "ldit"]

    status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "text": TEXT, "runs": ["ldit"]})
    assert status == 200 and [r["model"] for r in payload["results"]] == ["ldit"]
    result = payload["results"][0]
    assert result["mask_pixels"] == round(result["foreground"] * 160 * 120) and result["seconds"] > 0
    status, payload = post(f"{url}/api/segment", {"image_id": info["image_id"], "text": TEXT, "runs": []})
    assert status == 400 and payload["error"] == "Choose at least one run to compare."


def fake_model(trained: list[str], uses_text: bool) -> AppModel:
    """An AppModel over a stand-in predictor: the refusals read only what the adapter was trained with."""
    predictor = SimpleNamespace(trained_prompts=trained, uses_text=uses_text,
                                module=SimpleNamespace(hparams=SimpleNamespace(method="some_method")))
    return AppModel("run", predictor)


@pytest.mark.parametrize(("trained", "uses_text", "prompts", "refused"), [
    (["points"], False, Prompts(text="a cat"), "does not read text"),
    (["points", "box"], True, Prompts(text="a cat", points=[(1.0, 2.0)], point_labels=[1]), "not with text"),
    (["text"], True, Prompts(text="a cat", box=(0.0, 0.0, 5.0, 5.0)), "not with a box"),
    (["text"], True, Prompts(), "Give a prompt"),
    (["none"], False, Prompts(), None),
    (["points+text"], True, Prompts(points=[(1.0, 2.0)], point_labels=[0]), None),  # allowed, with a note
])
def test_prompts_not_trained_with_are_refused(trained, uses_text, prompts, refused):
    answer = fake_model(trained, uses_text).refusal(prompts)
    assert answer == refused if refused is None else refused in answer


def test_serve_states_its_precision_at_start_and_in_info(served, app_runs, monkeypatch, capsys):
    url, _ = served
    with urllib.request.urlopen(f"{url}/api/info", timeout=30) as response:
        info = json.loads(response.read())
    assert [m["precision"] for m in info["models"]] == ["fp32"] * len(info["models"])

    from samadapt.app import serve

    class StoppedServer:  # make_server's stand-in: started, then stopped at once as Ctrl+C would
        server_address = ("127.0.0.1", 1234)

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    monkeypatch.setattr(serve, "make_server", lambda *args: StoppedServer())
    serve.main(["--ckpt", str(app_runs["shallow"][1]), "--precision", "bf16", "--device", "cpu"])
    assert "bf16 on cpu" in capsys.readouterr().out
