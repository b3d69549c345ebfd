"""`fashionrec demo --serve` on a small demo: the resume checked bit-identical, recalls next to chance, the right
answers' ranks among the catalog's dresses, then the page."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_ends_by_serving_its_catalog(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "fashionrec", "demo", "--out", str(tmp_path / "demo"), "--images", "60"]
    command += ["--val-images", "8", "--epochs", "2", "--serve", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 600
        # "serving N items on ..." starts a line; the word alone is in this test's folder name, in every path.
        while not re.search(r"^serving \d+ items on ", log.read_text(), re.MULTILINE):
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not start serving within 10 minutes"
            time.sleep(0.5)
        categories = _get(f"http://127.0.0.1:{port}/categories")
    finally:
        demo.terminate()
        demo.wait(timeout=60)
    text = log.read_text()
    assert "chance level (a random ranking; galleries of [8] images): dress R@10 100.0 R@50 100.0" in text
    assert "resumed run vs uninterrupted run: bit-identical (weights, optimizer state, histories)" in text
    assert "catalog ranks of the right answers of all 8 dress validation queries, among the catalog's dresses" in text
    assert "--item D0000" in text and "--category dress" in text  # a catalog dress, among dresses
    assert f"== 8. serve the demo catalog: open http://127.0.0.1:{port}/" in text
    assert categories == {"categories": [{"name": n, "items": 20} for n in ("dress", "shirt", "toptee")]}


def _get(url: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url, timeout=5).json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
