"""The web page in a real headless Chromium: a shopping session turn by turn, uploads, errors, phone width."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import SCRIPT_TITLE, live_server

from fashionrec.index import Recommender
from fashionrec.serve.app import create_app

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
def browser(require) -> Iterator:
    sync_api = require("playwright.sync_api")
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


def chain(page) -> list[str]:
    return page.locator("#turns li").all_inner_texts()


def result_ids(page) -> list[str]:
    return page.locator("#results .id").all_inner_texts()


def ask(page, text: str, k: int) -> list[str]:
    """Type a change, send it with the keyboard, wait for k loaded result images."""
    page.fill("#text", text)
    page.fill("#k", str(k))
    page.press("#text", "Enter")
    page.wait_for_function(ALL_LOADED, arg=k)
    return result_ids(page)


def test_three_turns_from_a_catalog_item_within_a_category(page, tiny_service: tuple[Recommender, Path]) -> None:
    recommender, _ = tiny_service
    page.wait_for_selector("#category option[value=dress]", state="attached")
    page.select_option("#category", "dress")
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 1–16 of 16'")
    shown = page.locator("#catalog .id").all_inner_texts()
    assert len(shown) == 16 and all(i.startswith("D") for i in shown)
    assert set(page.locator("#catalog .category").all_inner_texts()) == {"dress"}

    # Turn 1: pick a dress from the catalog, say a change.
    page.get_by_role("button", name="Start from D000003").click()
    assert page.locator("#start").is_hidden() and page.evaluate("document.activeElement.id") == "text"
    assert chain(page) == ["Start: D000003"]
    first = ask(page, "is red", 6)
    assert first == [m.id for m in recommender.recommend(None, "is red", 6, item_id="D000003", category="dress")]
    assert "D000003" not in first and all(i.startswith("D") for i in first)
    assert chain(page) == ["Start: D000003", "“is red”"]
    assert page.locator("#status").inner_text().startswith("6 results in dress")

    # Turn 2: choose a result with the keyboard; it becomes the reference.
    chosen = first[1]
    page.focus(f"#results button[data-id='{chosen}']")
    page.keyboard.press("Enter")
    assert chain(page) == ["Start: D000003", "“is red”", f"Picked: {chosen}"]
    assert page.locator("#results li").count() == 0 and page.input_value("#text") == ""
    second = ask(page, "has long sleeves", 6)
    expected = recommender.recommend(None, "has long sleeves", 6, item_id=chosen, category="dress")
    assert second == [m.id for m in expected] and chosen not in second
    assert chain(page) == ["Start: D000003", "“is red”", f"Picked: {chosen}", "“has long sleeves”"]

    # Each result shows a garment on its background, not a blank box or a broken-image icon.
    for img in page.locator("#results img").all():
        pixels = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("RGB"), dtype=np.float32)
        assert pixels.shape[0] > 100 and pixels.std() > 15

    # Turn 3: click another result, then step back to turn 2 as it was.
    page.locator(f"#results button[data-id='{second[0]}']").click()
    assert chain(page)[-1] == f"Picked: {second[0]}"
    page.click("#back")
    assert chain(page) == ["Start: D000003", "“is red”", f"Picked: {chosen}", "“has long sleeves”"]
    assert result_ids(page) == second and page.input_value("#text") == "has long sleeves"
    page.click("#back")
    assert chain(page) == ["Start: D000003", "“is red”"] and result_ids(page) == first
    assert page.locator("#back").inner_text() == "Back to the catalog"
    page.click("#back")  # one turn left: back to the catalog, still filtered to dresses
    assert page.locator("#session").is_hidden() and page.locator("#catalog li").count() == 16


def test_the_catalog_pages_and_the_whole_catalog_can_be_searched(page) -> None:
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 1–24 of 48'")
    assert page.locator("#prev").is_disabled()
    page.click("#next")
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 25–48 of 48'")
    assert page.locator("#next").is_disabled() and page.locator("#catalog li").count() == 24
    page.locator("#catalog button").first.click()
    ids = ask(page, "is blue", 20)
    assert {i[0] for i in ids} > {"D"}  # no category chosen: results from every category


# Answers for the whole catalog arrive 0.8 s late; those for one category at once.
SLOW_WHOLE_CATALOG = """() => {
  const fetchNow = window.fetch;
  window.fetch = (url, options) => String(url).includes("category=")
    ? fetchNow(url, options)
    : new Promise((resolve) => setTimeout(() => resolve(fetchNow(url, options)), 800));
}"""


def test_a_late_answer_for_a_page_asked_before_does_not_replace_the_current_one(page) -> None:
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 1–24 of 48'")
    page.evaluate(SLOW_WHOLE_CATALOG)
    page.click("#next")  # asks for page 2 of the whole catalog: answered late
    page.select_option("#category", "dress")  # then for the dresses: answered first
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 1–16 of 16'")
    page.wait_for_timeout(1500)  # the late answer has come and gone
    assert page.locator("#page-info").inner_text() == "Items 1–16 of 16"
    assert set(page.locator("#catalog .category").all_inner_texts()) == {"dress"}


def test_upload_a_photo_and_see_errors_from_the_server(page, tiny_service: tuple[Recommender, Path]) -> None:
    _, images = tiny_service
    page.wait_for_selector("#catalog li")
    page.set_input_files("#image", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
    assert chain(page) == ["Start: your photo"]
    page.click("#submit")
    assert "Say what should change" in page.locator("#error").inner_text()
    page.fill("#text", "is blue")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('not a JPEG')")
    assert page.locator("#results li").count() == 0

    page.click("#restart")
    page.set_input_files("#image", str(images / "S000002.png"))
    page.wait_for_function("() => document.querySelector('#turns img').naturalWidth > 0")
    ids = ask(page, "is blue", 10)
    assert page.locator("#error").is_hidden() and "S000002" not in ids  # a catalog photo is not its own result


def test_readable_at_phone_width(browser, tiny_server: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, is_mobile=True)
    page = context.new_page()
    page.goto(tiny_server + "/")
    page.wait_for_selector("#catalog li")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("#catalog .card").first.bounding_box()["width"] >= 100
    page.locator("#catalog button").first.click()
    ask(page, "is red", 4)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for box in (page.locator(sel).bounding_box() for sel in ("#text", "#submit", "#back")):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    context.close()


def test_the_api_docs_page_lists_every_endpoint_offline(browser, tiny_server: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    outside = []
    page.on("request", lambda request: None if request.url.startswith(tiny_server) else outside.append(request.url))
    page.goto(tiny_server + "/docs")
    page.wait_for_selector(".endpoint h2")
    titles = page.locator(".endpoint h2").all_inner_texts()
    assert {"GET /items", "GET /categories", "POST /recommend", "GET /health"} <= set(titles)
    fields = page.locator(".endpoint", has_text="POST /recommend").locator("td").all_inner_texts()
    assert {"image", "item_id", "text (required)", "k", "category"} <= set(fields)
    assert outside == []
    context.close()


def test_cards_show_title_price_and_shop_link_and_catalog_text_stays_text(
    page, tiny_service: tuple[Recommender, Path]
) -> None:
    recommender, _ = tiny_service
    page.wait_for_selector("#category option[value=dress]", state="attached")
    page.select_option("#category", "dress")
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'Items 1–16 of 16'")
    party = page.locator("#catalog li", has=page.locator("button[data-id='D000005']"))
    assert party.locator(".title").inner_text() == SCRIPT_TITLE  # shown as the characters it is
    assert page.evaluate("window.pwned") is None and page.locator("#catalog script, #catalog b").count() == 0
    assert party.locator(".price").inner_text() == "25.90 EUR"
    link = party.locator("a.shop")
    assert link.get_attribute("href") == "https://shop.example/dress/5" and link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener noreferrer" and link.inner_text() == "View in shop"

    page.get_by_role("button", name="Start from D000003").click()
    shown = ask(page, "is red", 6)
    expected = recommender.recommend(None, "is red", 6, item_id="D000003", category="dress")
    assert shown == [m.id for m in expected]
    cards = page.locator("#results li")
    for i, match in enumerate(expected):
        product = match.product
        assert cards.nth(i).locator(".title").inner_text() == product.title
        assert cards.nth(i).locator(".price").inner_text() == f"{product.price} EUR"
        assert cards.nth(i).locator("a.shop").get_attribute("href") == product.url
    assert page.evaluate("window.pwned") is None


NO_BROKEN_PICTURE = "() => [...document.images].every(img => img.complete && img.naturalWidth > 0)"


def test_items_without_a_picture_say_so_and_no_picture_shows_broken(browser, imported_service: Recommender) -> None:
    """A catalog imported without images: its items show "No picture" and cannot be a starting point; a
    picture that fails to load becomes "No picture" too."""
    with live_server(create_app(imported_service)) as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#catalog li').length === 13")
        imageless = page.locator("#catalog button:disabled")
        assert imageless.count() == 12 and imageless.locator(".no-picture").count() == 12
        assert imageless.first.get_attribute("aria-label") == "c000, no picture: it cannot be a starting point"
        page.wait_for_function(NO_BROKEN_PICTURE)
        assert page.locator("#catalog img").count() == 1

        page.get_by_role("button", name="Start from added").click()
        page.fill("#text", "is green")
        page.press("#text", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#results li').length === 10")
        assert page.locator("#results .no-picture").count() == 10 and page.locator("#results img").count() == 0
        assert page.locator("#results button:disabled").count() == 10
        page.wait_for_function(NO_BROKEN_PICTURE)  # the chain shows the starting item's picture

        context.route("**/items/added/image", lambda route: route.fulfill(status=404, body="gone"))
        page.goto(url + "/")
        added = page.locator("#catalog button[data-id='added']")
        added.locator(".no-picture").wait_for()
        assert page.locator("#catalog img").count() == 0 and added.is_enabled()
        context.close()
