"""`samadapt serve`'s page in headless Chromium: choose two runs, prompt once, and the overlay drawn over each run's
image is, pixel for pixel, the predictor's own mask; points and the box are drawn where they were placed."""

import base64
import io
import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samadapt.inference.predictor import SamAdaptPredictor
from tests.app.conftest import example_images

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"
TEXT = "the red circle"
WIDTH, HEIGHT = 160, 120  # the example images
FILL_ALPHA = 115  # page.html: the tint inside a mask; its outline is opaque

# the page's own state, read the way a user would see it: JS helpers run inside the page
WATCH_BUSY = """window.sawBusy = false;
new MutationObserver(() => { window.sawBusy ||= document.getElementById('status').classList.contains('busy'); })
  .observe(document.getElementById('status'), {attributes: true});"""
CANVAS_PNG = "return arguments[0].toDataURL('image/png');"
ALPHA_AT = """const [canvas, x, y, width] = arguments, s = canvas.width / width;
return canvas.getContext('2d').getImageData(Math.floor(x * s), Math.floor(y * s), 1, 1).data[3];"""


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
                 "--disable-dev-shm-usage", "--window-size=1400,1000", "--force-device-scale-factor=1",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def expected_mask(ckpt: Path, image: Path, **prompts) -> np.ndarray:
    return SamAdaptPredictor.from_checkpoint(ckpt, precision="fp32").predict(image=image, **prompts).masks[0]


def fetch_png(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(response))


def outline(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask or outside the image."""
    padded = np.pad(mask, 1)
    inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inside


def assert_overlay_is_the_mask(driver, panel, mask: np.ndarray) -> None:
    """The panel's overlay canvas, read back from the browser: tinted exactly on the mask, opaque on its outline,
    in the run's colour (its swatch in the list)."""
    from selenium.webdriver.common.by import By

    canvas = panel.find_element(By.CSS_SELECTOR, "canvas.mask")
    png = driver.execute_script(CANVAS_PNG, canvas).split(",", 1)[1]
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGBA"))
    assert rgba.shape == (*mask.shape, 4), "the overlay is drawn at the image's own pixels"
    np.testing.assert_array_equal(rgba[..., 3] > 0, mask)
    np.testing.assert_array_equal(rgba[..., 3] == 255, outline(mask))
    assert set(np.unique(rgba[..., 3])) <= {0, FILL_ALPHA, 255}
    swatch = panel.find_element(By.CSS_SELECTOR, ".swatch").value_of_css_property("background-color")
    colour = [int(v) for v in swatch[swatch.index("(") + 1:-1].split(",")[:3]]
    assert (rgba[outline(mask)][:, :3] == colour).all()


def panels(driver) -> dict:
    from selenium.webdriver.common.by import By

    return {p.get_attribute("data-model"): p for p in driver.find_elements(By.CSS_SELECTOR, "#results .panel")}


def segmented(driver, count: int):
    """Wait for the page's `count`-th answer and for every mask it shows to be painted."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d) -> bool:
        if d.find_element(By.TAG_NAME, "body").get_attribute("data-segmented") != str(count):
            return False
        for panel in panels(d).values():
            links = panel.find_elements(By.CSS_SELECTOR, "a.download")
            painted = panel.find_element(By.CSS_SELECTOR, "canvas.mask").get_attribute("data-painted")
            if links and painted != links[0].get_dom_attribute("href"):
                return False
        return True

    WebDriverWait(driver, 30).until(done)
    return panels(driver)


def click_at(driver, marks, x: float, y: float, to: tuple[float, float] | None = None) -> None:
    """Click the image at pixel (x, y), or drag from there to `to`."""
    from selenium.webdriver.common.action_chains import ActionChains

    scale = marks.rect["width"] / WIDTH
    offset = (round((x - WIDTH / 2) * scale), round((y - HEIGHT / 2) * scale))  # from the element's centre
    actions = ActionChains(driver).move_to_element_with_offset(marks, *offset)
    if to is None:
        actions.click().perform()
    else:
        step = (round((to[0] - x) * scale / 2), round((to[1] - y) * scale / 2))
        actions.click_and_hold().move_by_offset(*step).move_by_offset(*step).release().perform()


def test_two_chosen_runs_masks_over_the_image(served, app_runs, shapes_root, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    image = example_images(shapes_root)[1]
    driver = chromium_driver(tmp_path / "profile")
    started = time.perf_counter()
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")

        # the list: every run with its method, training prompts and test oIoU; the first two chosen
        runs = {r.get_attribute("data-name"): r for r in driver.find_elements(By.CSS_SELECTOR, "#runs .run")}
        assert list(runs) == ["shallow", "ldit", "mixed"]
        assert [n for n, r in runs.items() if r.find_element(By.TAG_NAME, "input").is_selected()] == ["shallow", "ldit"]
        for name, method, trained in (("shallow", "shallow_fusion", "text"), ("ldit", "dit-layerwise", "text"),
                                      ("mixed", "shallow_fusion", "text, a box + clicked points + text")):
            results = json.loads((app_runs[name][0] / "results.json").read_text())
            oiou = results["metrics"]["all"]["oIoU"]
            assert f"test oIoU {oiou:.3f}" in runs[name].text
            assert method in runs[name].text and f"trained with {trained} ·" in runs[name].text
        assert "encoded once" in runs["shallow"].text and "while it encodes the image" in runs["ldit"].text

        # an example image, a text, Segment: both chosen runs' masks over that image, side by side
        driver.find_element(By.CSS_SELECTOR, f"#examples img[data-name='{image.name}']").click()
        wait.until(lambda d: "160 × 120" in d.find_element(By.ID, "size").text)
        driver.find_element(By.ID, "text").send_keys(TEXT)
        driver.execute_script(WATCH_BUSY)
        driver.find_element(By.ID, "segment").click()
        shown = segmented(driver, 1)
        assert list(shown) == ["shallow", "ldit"]
        assert driver.execute_script("return window.sawBusy"), "no busy indicator while the request ran"
        assert driver.find_element(By.ID, "status").text.startswith("Done in ")
        picture = driver.find_element(By.ID, "picture").get_attribute("src")
        for name, panel in shown.items():
            mask = expected_mask(app_runs[name][1], image, text=TEXT)
            assert 0.0 < mask.mean() < 1.0, "a mask with nothing on or everything on could not show a mismatch"
            assert panel.find_element(By.TAG_NAME, "img").get_attribute("src") == picture
            assert_overlay_is_the_mask(driver, panel, mask)
            download = panel.find_element(By.CSS_SELECTOR, "a.download")
            assert download.get_attribute("download") == f"{name}_mask.png"
            np.testing.assert_array_equal(fetch_png(download.get_attribute("href")), mask.astype(np.uint8) * 255)
            assert f"{int(mask.sum()):,} px" in panel.find_element(By.CSS_SELECTOR, ".area").text
            assert panel.find_element(By.CSS_SELECTOR, ".score b").text.startswith(("0.", "-0.", "1."))
        assert "re-encoded" in shown["ldit"].find_element(By.CSS_SELECTOR, ".note").text

        driver.find_element(By.ID, "show-masks").click()  # masks off and on again
        assert not shown["shallow"].find_element(By.CSS_SELECTOR, "canvas.mask").is_displayed()
        driver.find_element(By.ID, "show-masks").click()
        assert shown["shallow"].find_element(By.CSS_SELECTOR, "canvas.mask").is_displayed()

        # choose another pair: shallow and the run trained with clicks; then a point, then a box
        runs["ldit"].find_element(By.TAG_NAME, "label").click()
        driver.find_element(By.CSS_SELECTOR, "#runs .run[data-name='mixed'] label").click()
        assert list(panels(driver)) == ["shallow", "mixed"]
        marks = driver.find_element(By.ID, "marks")
        click_at(driver, marks, 60, 50)
        shown = segmented(driver, 2)
        points = json.loads(driver.find_element(By.ID, "points").get_attribute("data-points"))
        assert len(points) == 1 and np.allclose(points[0], (60, 50), atol=1.0)
        assert driver.execute_script(ALPHA_AT, marks, *points[0], WIDTH) > 0, "the point is not drawn where clicked"
        assert "not with clicked points" in shown["shallow"].find_element(By.CSS_SELECTOR, ".refused").text
        mask = expected_mask(app_runs["mixed"][1], image, text=TEXT, points=points, point_labels=[1])
        assert_overlay_is_the_mask(driver, shown["mixed"], mask)

        driver.find_element(By.CSS_SELECTOR, "#prompt-card .modes input[value=box] + span").click()
        click_at(driver, marks, 30, 25, to=(125, 100))
        shown = segmented(driver, 3)
        box = [float(v) for v in driver.find_element(By.ID, "box").get_attribute("value").split(",")]
        assert np.allclose(box, (30, 25, 125, 100), atol=1.0)
        left_edge, top_edge = (box[0], (box[1] + box[3]) / 2), ((box[0] + box[2]) / 2, box[1])
        for x, y in (left_edge, top_edge):
            assert driver.execute_script(ALPHA_AT, marks, x, y, WIDTH) > 0, f"the box is not drawn at ({x}, {y})"
        mask = expected_mask(app_runs["mixed"][1], image, text=TEXT, points=points, point_labels=[1], boxes=[box])
        assert 0.0 < mask.mean() < 1.0
        assert_overlay_is_the_mask(driver, shown["mixed"], mask)
        assert ("not this combination" in shown["mixed"].find_element(By.CSS_SELECTOR, ".note").text) is False

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "app.png"))
        driver.set_window_size(420, 1400)  # narrow: one column, nothing wider than the window
        wait.until(lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))
        tops = [driver.find_element(By.CSS_SELECTOR, css).rect["y"] for css in
                ("#runs-card", "#input-panel", "#prompt-card", "#results .panel")]
        assert tops == sorted(tops), "narrow order: runs, image, prompt, results"
        driver.save_screenshot(str(ARTIFACTS / "app-narrow.png"))
    finally:
        driver.quit()
    assert time.perf_counter() - started < 45
