"""`samadapt serve`: the page in headless Chromium shows the predictor's own masks; the API refuses in sentences."""

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from samadapt.app.adapter import AppModel, Prompts
from samadapt.app.serve import load_models
from samadapt.app.server import App, make_server
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.inference.segment import overlay

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"
TEXT = "the red circle"


def example_images(shapes_root: str) -> list[Path]:
    return sorted((Path(shapes_root) / "images" / "train2014").glob("*.jpg"))[:4]  # 160 x 120 each


@pytest.fixture(scope="module")
def served(trained_runs, shapes_root):
    """The app on a free loopback port with two runs side by side: shallow fusion (image encoded once) and
    L-DIT (text inside the encoder). Yields (base URL, App)."""
    models = load_models([trained_runs["shallow"][1], trained_runs["ldit"][1]], None, "cpu")
    app = App(models, example_images(shapes_root))
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", app
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def fetch_png(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(response))


def expected_mask(ckpt: Path, image: Path, **prompts) -> tuple[np.ndarray, float]:
    result = SamAdaptPredictor.from_checkpoint(ckpt).predict(image=image, **prompts)
    return result.masks[0], float(result.scores[0])


def chromium_driver(profile: Path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install -y chromium chromium-driver (.ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1250", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_page_shows_the_predictors_masks_side_by_side(served, trained_runs, shapes_root, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    image = example_images(shapes_root)[1]
    driver = chromium_driver(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        models_text = driver.find_element(By.ID, "models").text
        assert "re-encoded for each text" in models_text and "encoded once" in models_text
        driver.find_element(By.CSS_SELECTOR, f"#examples img[data-name='{image.name}']").click()
        wait.until(lambda d: "160 x 120" in d.find_element(By.ID, "size").text)
        driver.find_element(By.ID, "text").send_keys(TEXT)
        driver.find_element(By.ID, "segment").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-segmented") == "1")
        wait.until(lambda d: all(img.get_attribute("naturalWidth") == "160"
                                 for img in d.find_elements(By.CSS_SELECTOR, ".result img.overlay")))
        panels = driver.find_elements(By.CSS_SELECTOR, ".result")
        assert [p.get_attribute("data-model") for p in panels] == ["shallow", "ldit"]
        driver.save_screenshot(str(tmp_path / "app.png"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "app.png", ARTIFACTS / "app.png")

        rgb = np.asarray(Image.open(image).convert("RGB"))
        for panel, run in zip(panels, ("shallow", "ldit"), strict=True):
            mask, score = expected_mask(trained_runs[run][1], image, text=TEXT)
            assert 0.0 < mask.mean() < 1.0, "a mask with nothing on or everything on could not show a mismatch"
            download = panel.find_element(By.CSS_SELECTOR, "a.download")
            assert download.get_attribute("download") == f"{panel.get_attribute('data-model')}_mask.png"
            shown_mask = fetch_png(download.get_attribute("href"))
            np.testing.assert_array_equal(shown_mask == 255, mask)
            assert set(np.unique(shown_mask)) <= {0, 255}
            shown = fetch_png(panel.find_element(By.CSS_SELECTOR, "img.overlay").get_attribute("src"))
            np.testing.assert_array_equal(shown, overlay(rgb, mask))  # the image shown is that mask over the image
            assert f"{score:.3f}" in panel.find_element(By.CSS_SELECTOR, ".score").text
        assert "re-encoded" in panels[1].find_element(By.CSS_SELECTOR, ".message").text

        # a click adds a positive point: these text-only runs refuse it on the page, in a sentence
        driver.find_element(By.ID, "marks").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-segmented") == "2")
        refusals = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".result .refused")]
        assert len(refusals) == 2 and all("not with clicked points" in r for r in refusals)
    finally:
        driver.quit()


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
    assert calls == {"shallow": [1], "ldit": [3]}


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
