"""The real tiny model behind a real uvicorn: concurrent requests are answered, and answered right, also
while the index is rebuilt under the server."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from rec_fixtures import demo_images, tiny_checkpoint
from serve_helpers import live_server

from fashionrec.cli.main import main
from fashionrec.index import Recommender, build_index
from fashionrec.serve.app import create_app

TEXTS = ["is red", "has long sleeves", "is blue and striped", "is a maxi dress"]


@pytest.mark.slow
def test_concurrent_requests_get_the_same_answers_as_serial_ones(
    tiny_service: tuple[Recommender, Path], tiny_server: str
) -> None:
    recommender, images = tiny_service
    references = sorted(images.glob("*.png"))[:6]
    queries = [(ref, text) for ref in references for text in TEXTS]
    expected = {(ref.name, text): recommender.recommend(ref.read_bytes(), text, 5) for ref, text in queries}

    def ask(query: tuple[Path, str]) -> tuple[int, dict]:
        ref, text = query
        with httpx.Client(base_url=tiny_server, timeout=60) as client:
            response = client.post(
                "/recommend", files={"image": (ref.name, ref.read_bytes(), "image/png")}, data={"text": text, "k": "5"}
            )
        return response.status_code, response.json()

    def ask_badly(_: int) -> int:
        with httpx.Client(base_url=tiny_server, timeout=60) as client:
            response = client.post("/recommend", files={"image": ("x.png", b"junk")}, data={"text": "x"})
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        bad = pool.map(ask_badly, range(8))
        answers = list(pool.map(ask, queries))
        assert set(bad) == {400}
    for (ref, text), (status, body) in zip(queries, answers, strict=True):
        assert status == 200, body
        want = expected[(ref.name, text)]
        assert [r["id"] for r in body["results"]] == [m.id for m in want]
        np.testing.assert_allclose([r["score"] for r in body["results"]], [m.score for m in want], atol=1e-5)
    assert httpx.get(f"{tiny_server}/health").json()["status"] == "ok"


@pytest.mark.slow  # a rebuild with the real tiny model while four clients keep asking (about 5 s)
def test_a_rebuilt_index_is_taken_up_under_load_with_no_failed_request(tmp_path: Path) -> None:
    """`fashionrec index --rebuild` rewrites the folder under a running server: every request in flight
    and after is answered, and the server moves to the new version by itself."""
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    images = demo_images(tmp_path / "demo")
    index, cache = tmp_path / "index", tmp_path / "cache"
    build_index(checkpoint, images, index, cache_dir=cache, device="cpu")
    recommender = Recommender.open(checkpoint, index, device="cpu")
    references = sorted(images.glob("*.png"))[:4]
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                ref = references[i]
                files = {"image": (ref.name, ref.read_bytes(), "image/png")}
                statuses.append(client.post("/recommend", files=files, data={"text": "is red", "k": "5"}).status_code)
                data = {"item_id": ref.stem, "text": "is blue", "k": "5"}
                statuses.append(client.post("/recommend", data=data).status_code)
                statuses.append(client.get("/items", params={"limit": 100}).status_code)

    try:
        with live_server(create_app(recommender)) as url, ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(keep_asking, i) for i in range(4)]
            Image.new("RGB", (64, 64), (10, 200, 30)).save(images / "new.png")
            argv = ["index", "--checkpoint", str(checkpoint), "--images", str(images), "--out", str(index)]
            assert main([*argv, "--cache-dir", str(cache), "--device", "cpu", "--rebuild"]) == 0
            answered_during_the_rebuild = len(statuses)
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/items").json()["total"] != 49:
                assert time.monotonic() < deadline, "the server did not take up the rebuilt index"
                time.sleep(0.05)
            time.sleep(0.3)  # more requests against the new version
            stop.set()
            for done in clients:
                done.result()
            health = httpx.get(f"{url}/health").json()
    finally:
        stop.set()
        recommender.close()
    assert answered_during_the_rebuild > 0 and set(statuses) == {200}, Counter(statuses)
    assert (health["status"], health["items"]) == ("ok", 49)
