"""Every backend must return exactly the brute-force inner-product ranking (FAISS IVF: up to its recall)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rec_fixtures import brute_force, labels, members, records, unit

from fashionrec.index.backends import connect_backend, requested_location
from fashionrec.index.faiss_backend import FaissBackend
from fashionrec.index.store import StoreOptions


def new_backend(kind: str, folder: Path, url: str | None = None, collection: str | None = None):
    options = StoreOptions(backend=kind, url=url, collection=collection)
    return connect_backend(requested_location(options), folder, options)


def ids(hits) -> list[str]:
    return [hit.item.id for hit in hits]


@pytest.fixture
def data() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"item/{i:04d}" for i in range(300)]
    return ids, unit(rng.standard_normal((300, 24))), unit(rng.standard_normal((5, 24)))


@pytest.fixture(params=["faiss", "qdrant"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path, quick_folder: Path):
    """(new store for building, reopen(entry, items) for searching), for each backend. `reopen` closes the
    store and opens it again from disk: FAISS from its index file, Qdrant from its local-mode folder."""
    opened = []

    def make():
        url = str(quick_folder) if request.param == "qdrant" else None
        opened.append(new_backend(request.param, tmp_path, url=url, collection="items"))
        return opened[-1]

    def reopen(entry, items):
        opened.pop().close()  # local mode holds a lock on its folder: one client at a time
        opened.append(connect_backend(entry, tmp_path, StoreOptions()))
        return opened[-1].searcher(entry, items)

    yield make, reopen
    for store in opened:
        store.close()


@pytest.mark.slow
def test_search_matches_brute_force_after_reopening(backend_factory, data) -> None:
    make, reopen = backend_factory
    names, vectors, queries = data
    items = records(names)
    entry = make().sync(items, vectors, changed=names, removed=[], reset=True)
    store = reopen(entry, items)
    for query, hits in zip(queries, store.search(queries, 10), strict=True):
        assert ids(hits) == brute_force(vectors, names, query, 10)
        expected = np.sort(vectors @ query)[::-1][:10]
        np.testing.assert_allclose([s for _, s in hits], expected, rtol=1e-4, atol=1e-5)


def test_excluded_ids_never_come_back_and_k_is_kept(backend_factory, data) -> None:
    make, _ = backend_factory
    names, vectors, queries = data
    store = make()
    items = records(names)
    entry = store.sync(items, vectors, changed=names, removed=[], reset=True)
    exclude = set(brute_force(vectors, names, queries[0], 3))
    hits = store.searcher(entry, items).search(queries[:1], 5, exclude)[0]
    assert ids(hits) == brute_force(vectors, names, queries[0], 5, exclude)


def test_update_in_place_adds_changes_and_removes(backend_factory, data) -> None:
    make, reopen = backend_factory
    names, vectors, queries = data
    store = make()
    store.sync(records(names), vectors, changed=names, removed=[], reset=True)
    # Drop the first 50, change the next 10 to point at query 0, add 5 new ones.
    rng = np.random.default_rng(1)
    new_names = names[50:] + [f"new/{i}" for i in range(5)]
    new_vectors = np.concatenate([vectors[50:], unit(rng.standard_normal((5, 24)))])
    new_vectors[:10] = unit(queries[0] + 0.01 * rng.standard_normal((10, 24)))
    changed = new_names[:10] + new_names[-5:]
    entry = store.sync(records(new_names), new_vectors, changed=changed, removed=names[:50], reset=False)
    store = reopen(entry, records(new_names))
    for query, hits in zip(queries, store.search(queries, 300), strict=True):
        assert ids(hits) == brute_force(new_vectors, new_names, query, 300)
    assert set(ids(store.search(queries[:1], 10)[0])) == set(new_names[:10])


def test_category_filtered_search_is_the_brute_force_ranking_within_the_category(backend_factory, data) -> None:
    make, reopen = backend_factory
    names, vectors, queries = data
    categories = labels(names)
    items = records(names, categories)
    entry = make().sync(items, vectors, changed=names, removed=[], reset=True)
    store = reopen(entry, items)
    for name in ("dress", "shirt", "toptee"):
        among = members(names, categories, name)
        exclude = set(brute_force(vectors, names, queries[0], 2, among=among))
        for k in (1, 10, len(among) + 5):
            for query, hits in zip(queries, store.search(queries, k, exclude, category=name), strict=True):
                assert ids(hits) == brute_force(vectors, names, query, k, exclude, among)
                expected = [float(vectors[names.index(i)] @ query) for i in ids(hits)]
                np.testing.assert_allclose([s for _, s in hits], expected, rtol=1e-4, atol=1e-5)
                assert all(name in hit.item.categories for hit in hits)
    assert store.search(queries, 5, category="coat") == [[] for _ in queries]


def test_an_update_that_only_moves_items_between_categories_is_searched_right(backend_factory, data) -> None:
    make, reopen = backend_factory
    names, vectors, queries = data
    store = make()
    store.sync(records(names, labels(names)), vectors, changed=names, removed=[], reset=True)
    moved = labels(names)
    moved[:30] = [("dress",)] * 30
    changed = [i for i, a, b in zip(names, labels(names), moved, strict=True) if a != b]
    entry = store.sync(records(names, moved), vectors, changed=changed, removed=[], reset=False)
    store = reopen(entry, records(names, moved))
    among = members(names, moved, "dress")
    hits = store.search(queries[:1], 300, category="dress")[0]
    assert ids(hits) == brute_force(vectors, names, queries[0], 300, among=among)


def test_qdrant_reset_drops_points_from_elsewhere(tmp_path: Path, data) -> None:
    names, vectors, queries = data
    store = new_backend("qdrant", tmp_path, url=":memory:", collection="items")
    store.sync(records(["stray"]), vectors[:1], changed=["stray"], removed=[], reset=True)
    entry = store.sync(records(names), vectors, changed=names, removed=[], reset=False)  # count mismatch: starts over
    assert "stray" not in ids(store.searcher(entry, records(names)).search(vectors[:1], 300)[0])
    store.close()


def clustered(seed: int, count: int = 4000) -> tuple[list[str], np.ndarray]:
    """Vectors around 20 centres: data IVF suits."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((20, 32)))
    vectors = unit(centres[rng.integers(0, 20, count)] + 0.3 * rng.standard_normal((count, 32)) / np.sqrt(32))
    return [str(i) for i in range(count)], vectors


def test_faiss_goes_approximate_above_threshold_and_measures_recall(tmp_path: Path) -> None:
    names, vectors = clustered(2)
    items = records(names)
    entry = FaissBackend(tmp_path, approx_threshold=1000, target_recall=0.9).sync(items, vectors)
    assert entry["type"] == "ivf" and entry["nlist"] == 63
    assert entry["recall_at_10"] >= 0.9 and 1 <= entry["nprobe"] <= entry["nlist"]
    reopened = FaissBackend(tmp_path).searcher(entry, items)  # read back from the file
    queries = vectors[:50]
    found = reopened.search(queries, 10)
    recall = np.mean(
        [
            len(set(ids(hits)) & set(brute_force(vectors, names, q, 10))) / 10
            for q, hits in zip(queries, found, strict=True)
        ]
    )
    assert recall >= 0.85
    assert FaissBackend(tmp_path, approx_threshold=10_000).sync(items, vectors)["type"] == "flat"


def test_faiss_ivf_filtered_search_fills_k_from_a_small_category(tmp_path: Path) -> None:
    """A category of 20 scattered items rarely has 10 members in the few lists IVF probes: the search
    then scans every list, and returns the category's exact top 10."""
    names, vectors = clustered(4)
    few = set(np.random.default_rng(5).choice(4000, 20, replace=False).tolist())
    items = records(names, [("rare",) if i in few else ("common",) for i in range(4000)])
    entry = FaissBackend(tmp_path, approx_threshold=1000, target_recall=0.9).sync(items, vectors)
    assert entry["type"] == "ivf" and entry["nprobe"] < entry["nlist"]
    store = FaissBackend(tmp_path).searcher(entry, items)
    among = {str(i) for i in few}
    for query, hits in zip(vectors[:20], store.search(vectors[:20], 10, category="rare"), strict=True):
        assert ids(hits) == brute_force(vectors, names, query, 10, among=among)


def test_faiss_keeps_the_exact_index_when_ivf_would_need_most_lists(tmp_path: Path) -> None:
    """Uniform random vectors have no clusters: 0.95 recall would take scanning nearly every list."""
    vectors = unit(np.random.default_rng(3).standard_normal((4000, 64)))
    names = [str(i) for i in range(4000)]
    entry = FaissBackend(tmp_path, approx_threshold=1000).sync(records(names), vectors)
    assert entry["type"] == "flat"
    assert entry["ivf_rejected"]["nprobe"] == 15 and entry["ivf_rejected"]["recall_at_10"] < 0.95
    store = FaissBackend(tmp_path).searcher(entry, records(names))
    assert ids(store.search(vectors[:1], 5)[0]) == brute_force(vectors, names, vectors[0], 5)


def test_qdrant_local_folder_persists_across_clients(tmp_path: Path, data) -> None:
    names, vectors, queries = data
    names, vectors = names[:20], vectors[:20]
    store = new_backend("qdrant", tmp_path, url=str(tmp_path / "qdrant"), collection="items")
    entry = store.sync(records(names), vectors, changed=names, removed=[], reset=True)
    store.close()
    assert entry == {"kind": "qdrant", "url": str(tmp_path / "qdrant"), "collection": "items"}
    reopened = connect_backend(entry, tmp_path, StoreOptions())
    hits = reopened.searcher(entry, []).search(queries[:1], 5)[0]  # items from the points' payloads
    assert ids(hits) == brute_force(vectors, names, queries[0], 5)
    assert hits[0].item == records(names)[names.index(hits[0].item.id)]
    reopened.close()
