"""The real tiny model behind a real uvicorn: concurrent requests are answered, and answered right."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from fashionrec.index import Recommender

TEXTS = ["is red", "has long sleeves", "is blue and striped", "is a maxi dress"]


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
