"""The Qdrant backend against a real Qdrant server (`--url http://...`). No server runs on the development
machine or in CI, so these run only where `QDRANT_URL` names one (e.g. `docker run -p 6333:6333
qdrant/qdrant`, then `QDRANT_URL=http://127.0.0.1:6333 pytest -m qdrant_server`), and skip otherwise."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_fixtures import brute_force, labels, members, records, unit

from fashionrec.index import Recommender, build_index
from fashionrec.index.backends import connect_backend
from fashionrec.index.categories import from_split_files
from fashionrec.index.manifest import load_manifest
from fashionrec.index.qdrant_backend import CATEGORY_FIELD, make_client
from fashionrec.index.store import StoreOptions

pytestmark = pytest.mark.qdrant_server


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    """(server URL, a fresh collection name), the collection deleted afterwards."""
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
    if not url.startswith(("http://", "https://")):
        pytest.fail(f"QDRANT_URL must be a server's http(s):// address, got {url!r}")
    collection = f"fashionrec-test-{uuid.uuid4().hex[:12]}"
    yield url, collection
    client = make_client(url)
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.close()


def test_server_search_update_and_category_filter_match_brute_force(server: tuple[str, str], tmp_path: Path) -> None:
    from qdrant_client import models

    url, collection = server
    rng = np.random.default_rng(0)
    names = [f"item/{i:04d}" for i in range(300)]
    vectors, queries = unit(rng.standard_normal((300, 24))), unit(rng.standard_normal((5, 24)))
    categories = labels(names)
    location = {"kind": "qdrant", "url": url, "collection": collection}
    backend = connect_backend(location, tmp_path, StoreOptions())
    entry = backend.sync(records(names, categories), vectors, changed=names, removed=[], reset=True)
    assert entry == location
    try:
        store = backend.searcher(entry, [])
        schema = backend.client.get_collection(collection).payload_schema
        assert schema[CATEGORY_FIELD].data_type == models.PayloadSchemaType.KEYWORD  # the server's payload index
        for query, hits in zip(queries, store.search(queries, 10), strict=True):
            assert [h.item.id for h in hits] == brute_force(vectors, names, query, 10)
            np.testing.assert_allclose([s for _, s in hits], np.sort(vectors @ query)[::-1][:10], rtol=1e-4, atol=1e-5)
        for name in ("dress", "shirt", "toptee"):
            among = members(names, categories, name)
            exclude = set(brute_force(vectors, names, queries[0], 2, among=among))
            for k in (1, 10, len(among) + 5):
                found = store.search(queries, k, exclude, category=name)
                for query, hits in zip(queries, found, strict=True):
                    assert [h.item.id for h in hits] == brute_force(vectors, names, query, k, exclude, among)
        assert store.search(queries, 5, category="coat") == [[] for _ in queries]
        # In place: drop 50, point 10 at query 0, add 5, and move 30 into "dress".
        new_names = names[50:] + [f"new/{i}" for i in range(5)]
        new_vectors = np.concatenate([vectors[50:], unit(rng.standard_normal((5, 24)))])
        new_vectors[:10] = unit(queries[0] + 0.01 * rng.standard_normal((10, 24)))
        new_categories = categories[50:] + [("dress",)] * 5
        new_categories[10:40] = [("dress",)] * 30
        changed = new_names[:40] + new_names[-5:]
        items = records(new_names, new_categories)
        backend.sync(items, new_vectors, changed=changed, removed=names[:50], reset=False)
        assert backend.client.count(collection, exact=True).count == len(new_names)
        for query, hits in zip(queries, store.search(queries, 300), strict=True):
            assert [h.item.id for h in hits] == brute_force(new_vectors, new_names, query, 300)
        dresses = members(new_names, new_categories, "dress")
        hits = store.search(queries[:1], 300, category="dress")[0]
        assert [h.item.id for h in hits] == brute_force(new_vectors, new_names, queries[0], 300, among=dresses)
        assert store.get("new/4") == items[-1]  # the record comes from the server
    finally:
        backend.close()


def test_index_and_recommend_within_a_category_through_a_server(
    server: tuple[str, str], tiny_ckpt: Path, demo_dir: Path, tmp_path: Path
) -> None:
    url, collection = server
    out = tmp_path / "index"
    report = build_index(
        tiny_ckpt,
        demo_dir,
        out,
        backend="qdrant",
        url=url,
        collection=collection,
        categories=from_split_files(demo_dir.parent),
        cache_dir=tmp_path / "cache",
        device="cpu",
    )
    assert report.backend["url"] == url and report.categories == {"dress": 16, "shirt": 16, "toptee": 16}
    manifest = load_manifest(out)
    ids, vectors = [i.id for i in manifest.items], np.load(out / manifest.embeddings)
    dresses = {i.id for i in manifest.items if "dress" in i.categories}
    recommender = Recommender.open(tiny_ckpt, out, device="cpu")
    try:
        text, reference = "has long sleeves", demo_dir / "D000003.png"
        matches = recommender.recommend(None, text, 8, item_id="D000003", category="dress")
        everything = recommender.recommend(None, text, 47, item_id="D000003")
        prepared = recommender.encoder.prepare_query(Image.open(reference).convert("RGB"), text)
        query = recommender.encoder.encode_queries([prepared])[0]
    finally:
        recommender.close()
    order = [ids[r] for r in np.argsort(-(vectors @ query), kind="stable") if ids[r] != "D000003"]
    assert [m.id for m in matches] == [i for i in order if i in dresses][:8]
    assert [m.id for m in everything] == order
    scores = dict(zip(ids, vectors @ query, strict=True))
    np.testing.assert_allclose([m.score for m in everything], [scores[i] for i in order], rtol=1e-4, atol=1e-5)


def test_a_lost_server_is_503_in_one_line_and_service_resumes_by_itself(
    server: tuple[str, str], demo_dir: Path, tmp_path: Path
) -> None:
    """The server goes away under a running app (every connection cut, the port closed) and comes back."""
    from urllib.parse import urlsplit

    from fastapi.testclient import TestClient
    from rec_fixtures import FakeEncoder
    from tcp_proxy import tcp_proxy

    from fashionrec.index.registry import open_catalog
    from fashionrec.serve.app import create_app

    url, collection = server
    parts = urlsplit(url)
    with tcp_proxy(parts.hostname, parts.port or 6333) as proxy:
        relayed = f"{parts.scheme}://{proxy.address}"
        build_index(
            Path("unused"),
            demo_dir,
            tmp_path / "index",
            encoder=FakeEncoder(),
            backend="qdrant",
            url=relayed,
            collection=collection,
        )
        recommender = Recommender(FakeEncoder(), open_catalog(tmp_path / "index"))
        query = {"data": {"item_id": "D000001", "text": "is red", "k": "5"}}
        with TestClient(create_app(recommender)) as client:
            assert client.post("/recommend", **query).status_code == 200
            proxy.cut()
            lost = client.post("/recommend", **query)
            assert lost.status_code == 503 and "\n" not in lost.json()["error"] and relayed in lost.json()["error"]
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            proxy.restore()
            assert client.post("/recommend", **query).status_code == 200
            assert client.get("/health").json()["status"] == "ok"
        recommender.close()
