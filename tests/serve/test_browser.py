"""The web page in a real headless Chromium: upload, preview, results grid with scores, error messages."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionrec.index import Recommender

pytestmark = pytest.mark.slow  # starts real processes

CHROMIUM = os.environ.get("FASHIONREC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Only loopback traffic: no sandbox (containers), no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ALL_LOADED = """k => {
    const imgs = [...document.querySelectorAll('#results img')];
    return imgs.length === k && imgs.every(img => img.complete && img.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or set FASHIONREC_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tiny_server: str) -> Iterator:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(tiny_server + "/")
    yield page
    context.close()


def test_query_renders_a_grid_of_k_loaded_images_with_scores(
    page, tiny_service: tuple[Recommender, Path], tmp_path: Path
) -> None:
    _, images = tiny_service
    page.click("#submit")
    assert "Choose a reference image" in page.locator("#error").inner_text()

    page.set_input_files("#image", str(images / "D000001.png"))
    page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
    assert page.locator("#preview-box").is_visible()
    page.fill("#text", "is red with long sleeves")
    page.fill("#k", "6")
    page.click("#submit")
    page.wait_for_function(ALL_LOADED, arg=6)

    assert page.locator("#error").is_hidden()
    assert page.locator("#status").inner_text() == "6 results"
    ids = page.locator("#results .id").all_inner_texts()
    scores = [float(s) for s in page.locator("#results .score").all_inner_texts()]
    assert len(set(ids)) == 6 and "D000001" not in ids
    assert scores == sorted(scores, reverse=True)

    shot = tmp_path / "results.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1100
    # Each result shows a garment on its background, not a blank box or a broken-image icon.
    for img in page.locator("#results img").all():
        pixels = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("RGB"), dtype=np.float32)
        assert pixels.shape[0] > 100 and pixels.std() > 15


def test_errors_from_the_server_are_shown_and_the_page_recovers(page, tiny_service: tuple[Recommender, Path]) -> None:
    _, images = tiny_service
    page.set_input_files("#image", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
    page.fill("#text", "is blue")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "not a JPEG, PNG or WebP" in page.locator("#error").inner_text()
    assert page.locator("#results li").count() == 0

    page.set_input_files("#image", str(images / "S000002.png"))
    page.click("#submit")
    page.wait_for_function(ALL_LOADED, arg=10)
    assert page.locator("#error").is_hidden()
