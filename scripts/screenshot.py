#!/usr/bin/env python3
"""Take the screenshot of the web page that the docs show (docs/images/serving-session.png): a session on
the demo catalog, with product details, in headless Chromium.

    PYTHONPATH=src venv/bin/python scripts/screenshot.py [--checkpoint C] [--out PNG]

Makes demo data in a temporary folder, gives each item a title, a price and a shop address from what the
picture shows, indexes it, runs `fashionrec serve` on it, then picks a dress, asks "is red", picks the
first result and asks "has long sleeves". Without --checkpoint the model is a random-initialised tiny
one, so the rankings mean nothing; `fashionrec demo`'s final checkpoint gives rankings that follow the
text. Needs Playwright (the `test` extra) and Chromium (`apt-get install -y chromium`, or
$FASHIONREC_CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fashionrec.atomic import atomic_write  # noqa: E402
from fashionrec.index.items import Product  # noqa: E402

OUT = ROOT / "docs" / "images" / "serving-session.png"
SERVING = re.compile(r"serving \d+ items on (http://\S+/)")
PATTERN = {"solid": "", "stripes": "striped", "dots": "polka-dot"}
SLEEVES = {"none": "sleeveless", "short": "short-sleeved", "long": "long-sleeved"}
LENGTH = {"dress": {"short": "mini", "medium": "midi", "long": "maxi"}, "top": {"short": "cropped", "long": "tunic"}}
NOUN = {"dress": "dress", "shirt": "shirt", "toptee": "top"}
TURNS = ("is red", "has long sleeves")  # the changes asked for; the first result of the first is picked


def products(attributes: dict[str, dict[str, str]]) -> dict[str, Product]:
    """A shop's details for each demo item: a title saying what the picture shows, a price, an address."""
    rng = random.Random(0)
    details = {}
    for item_id, garment in sorted(attributes.items()):
        kind = garment["category"]
        length = LENGTH["dress" if kind == "dress" else "top"].get(garment["length"], "")
        words = [garment["colour"], PATTERN[garment["pattern"]], SLEEVES[garment["sleeves"]], length, NOUN[kind]]
        title = " ".join(word for word in words if word).capitalize()
        price = f"{rng.randrange(19, 90)}.90"
        details[item_id] = Product(title, price, "EUR", f"https://shop.example/p/{item_id}")
    return details


def catalog(work: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    """(checkpoint, index folder) of the demo catalog with product details and the demo's categories."""
    import torch

    from fashionrec.data.demo import LENGTH_PHRASES, PHRASES, make_demo_data
    from fashionrec.index import build_index
    from fashionrec.index.categories import from_split_files
    from fashionrec.model import create_model, save_pretrained

    demo = make_demo_data(work / "demo", images=600)
    if checkpoint is None:
        tables = (*PHRASES.values(), *LENGTH_PHRASES.values())
        texts = [phrase for table in tables for phrases in table.values() for phrase in phrases]
        torch.manual_seed(0)
        checkpoint = work / "tiny"
        save_pretrained(create_model("tiny", texts, pretrained=False), checkpoint)
    attributes = json.loads((demo / "attributes.json").read_text())
    index = work / "index"
    build_index(
        checkpoint,
        demo / "images",
        index,
        cache_dir=work / "cache",
        device="cpu",
        categories=from_split_files(demo),
        products=products(attributes),
    )
    return checkpoint, index


def session(url: str, chromium: str) -> bytes:
    """The page after two turns, as a PNG of the whole page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#category option[value=dress]", state="attached")
        page.select_option("#category", "dress")
        page.get_by_role("button", name="Start from D000003").click()
        for text in TURNS:
            page.fill("#text", text)
            page.fill("#k", "6")
            page.press("#text", "Enter")
            page.wait_for_function("() => document.querySelectorAll('#results img').length === 6")
            page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
            if text == TURNS[0]:
                page.locator("#results button").first.click()
        page.locator("#text").blur()
        page.mouse.move(0, 0)  # no card under the pointer, so none is drawn as hovered
        shot = page.screenshot(full_page=True)
        browser.close()
        return shot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a trained model (default: a random-initialised tiny one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the PNG (default: {OUT})")
    args = parser.parse_args()
    chromium = os.environ.get("FASHIONREC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as work:
        checkpoint, index = catalog(Path(work), args.checkpoint)
        command = [sys.executable, "-m", "fashionrec", "serve", "--checkpoint", str(checkpoint)]
        command += ["--index", str(index), "--port", "0", "--device", "cpu"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as server:
            try:
                for line in server.stdout:
                    if serving := SERVING.search(line):
                        shot = session(serving[1], chromium)
                        break
                else:
                    raise SystemExit("error: the server did not start")
            finally:
                server.terminate()
    atomic_write(args.out, lambda f: f.write(shot))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
