"""Every backend must return exactly the brute-force inner-product ranking (FAISS IVF: up to its recall)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rec_fixtures import brute_force, labels, members, unit

from fashionrec.index.backends import new_backend, open_backend
from fashionrec.index.faiss_backend import FaissBackend


@pytest.fixture
def data() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"item/{i:04d}" for i in range(300)]
    return ids, unit(rng.standard_normal((300, 24))), unit(rng.standard_normal((5, 24)))


@pytest.fixture
def quick_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder for qdrant-client's local mode. It commits every point to SQLite separately, an fsync
    each (about 25 ms on a disk here, 8 s for 300 points): on a tmpfs (/dev/shm) when there is one, which
    changes where the files are, not how they are written and read back."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="fashionrec-qdrant-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path / "qdrant"


@pytest.fixture(params=["faiss", "qdrant"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path, quick_folder: Path):
    """(new store for building, reopen(entry, ids) for searching), for each backend. `reopen` closes the
    store and opens it again from disk: FAISS from its index file, Qdrant from its local-mode folder."""
    opened = []

    def make():
        url = str(quick_folder) if request.param == "qdrant" else None
        opened.append(new_backend(request.param, tmp_path, url=url, collection="items"))
        return opened[-1]

    def reopen(entry, ids, categories=None):
        opened.pop().close()  # local mode holds a lock on its folder: one client at a time
        opened.append(open_backend(entry, tmp_path, ids, categories))
        return opened[-1]

    yield make, reopen
    for store in opened:
        store.close()


def test_search_matches_brute_force_after_reopening(backend_factory, data) -> None:
    make, reopen = backend_factory
    ids, vectors, queries = data
    entry = make().sync(ids, vectors, changed=ids, removed=[], reset=True)
    store = reopen(entry, ids)
    for query, hits in zip(queries, store.search(queries, 10), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)
        expected = np.sort(vectors @ query)[::-1][:10]
        np.testing.assert_allclose([s for _, s in hits], expected, rtol=1e-4, atol=1e-5)


def test_excluded_ids_never_come_back_and_k_is_kept(backend_factory, data) -> None:
    make, _ = backend_factory
    ids, vectors, queries = data
    store = make()
    store.sync(ids, vectors, changed=ids, removed=[], reset=True)
    exclude = set(brute_force(vectors, ids, queries[0], 3))
    hits = store.search(queries[:1], 5, exclude)[0]
    assert [i for i, _ in hits] == brute_force(vectors, ids, queries[0], 5, exclude)


def test_update_in_place_adds_changes_and_removes(backend_factory, data) -> None:
    make, reopen = backend_factory
    ids, vectors, queries = data
    store = make()
    store.sync(ids, vectors, changed=ids, removed=[], reset=True)
    # Drop the first 50, change the next 10 to point at query 0, add 5 new ones.
    rng = np.random.default_rng(1)
    new_ids = ids[50:] + [f"new/{i}" for i in range(5)]
    new_vectors = np.concatenate([vectors[50:], unit(rng.standard_normal((5, 24)))])
    new_vectors[:10] = unit(queries[0] + 0.01 * rng.standard_normal((10, 24)))
    changed = new_ids[:10] + new_ids[-5:]
    entry = store.sync(new_ids, new_vectors, changed=changed, removed=ids[:50], reset=False)
    store = reopen(entry, new_ids)
    for query, hits in zip(queries, store.search(queries, 300), strict=True):
        assert [i for i, _ in hits] == brute_force(new_vectors, new_ids, query, 300)
    assert {i for i, _ in store.search(queries[:1], 10)[0]} == set(new_ids[:10])


def test_category_filtered_search_is_the_brute_force_ranking_within_the_category(backend_factory, data) -> None:
    make, reopen = backend_factory
    ids, vectors, queries = data
    categories = labels(ids)
    entry = make().sync(ids, vectors, changed=ids, removed=[], reset=True, categories=categories)
    store = reopen(entry, ids, categories)
    for name in ("dress", "shirt", "toptee"):
        among = members(ids, categories, name)
        exclude = set(brute_force(vectors, ids, queries[0], 2, among=among))
        for k in (1, 10, len(among) + 5):
            for query, hits in zip(queries, store.search(queries, k, exclude, category=name), strict=True):
                assert [i for i, _ in hits] == brute_force(vectors, ids, query, k, exclude, among)
                np.testing.assert_allclose(
                    [s for _, s in hits], [float(vectors[ids.index(i)] @ query) for i, _ in hits], rtol=1e-4, atol=1e-5
                )
    assert store.search(queries, 5, category="coat") == [[] for _ in queries]


def test_an_update_that_only_moves_items_between_categories_is_searched_right(backend_factory, data) -> None:
    make, reopen = backend_factory
    ids, vectors, queries = data
    store = make()
    store.sync(ids, vectors, changed=ids, removed=[], reset=True, categories=labels(ids))
    moved = labels(ids)
    moved[:30] = [("dress",)] * 30
    changed = [i for i, a, b in zip(ids, labels(ids), moved, strict=True) if a != b]
    entry = store.sync(ids, vectors, changed=changed, removed=[], reset=False, categories=moved)
    store = reopen(entry, ids, moved)
    among = members(ids, moved, "dress")
    assert [i for i, _ in store.search(queries[:1], 300, category="dress")[0]] == brute_force(
        vectors, ids, queries[0], 300, among=among
    )


def test_qdrant_reset_drops_points_from_elsewhere(tmp_path: Path, data) -> None:
    ids, vectors, queries = data
    store = new_backend("qdrant", tmp_path, url=":memory:", collection="items")
    store.sync(["stray"], vectors[:1], changed=["stray"], removed=[], reset=True)
    store.sync(ids, vectors, changed=ids, removed=[], reset=False)  # count mismatch: starts over
    assert "stray" not in {i for i, _ in store.search(vectors[:1], 300)[0]}
    store.close()


def test_faiss_goes_approximate_above_threshold_and_measures_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    centres = unit(rng.standard_normal((20, 32)))
    vectors = unit(centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32)) / np.sqrt(32))
    ids = [str(i) for i in range(4000)]
    store = FaissBackend(tmp_path, approx_threshold=1000, target_recall=0.9)
    entry = store.sync(ids, vectors)
    assert entry["type"] == "ivf" and entry["nlist"] == 63
    assert entry["recall_at_10"] >= 0.9 and 1 <= entry["nprobe"] <= entry["nlist"]
    reopened = FaissBackend.open(tmp_path, entry, ids)
    queries = vectors[:50]
    found = reopened.search(queries, 10)
    recall = np.mean(
        [
            len({i for i, _ in hits} & set(brute_force(vectors, ids, q, 10))) / 10
            for q, hits in zip(queries, found, strict=True)
        ]
    )
    assert recall >= 0.85
    assert FaissBackend(tmp_path, approx_threshold=10_000).sync(ids, vectors)["type"] == "flat"


def test_faiss_ivf_filtered_search_fills_k_from_a_small_category(tmp_path: Path) -> None:
    """A category of 20 scattered items rarely has 10 members in the few lists IVF probes: the search
    then scans every list, and returns the category's exact top 10."""
    rng = np.random.default_rng(4)
    centres = unit(rng.standard_normal((20, 32)))
    vectors = unit(centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32)) / np.sqrt(32))
    ids = [str(i) for i in range(4000)]
    few = set(rng.choice(4000, 20, replace=False).tolist())
    categories = [("rare",) if i in few else ("common",) for i in range(4000)]
    entry = FaissBackend(tmp_path, approx_threshold=1000, target_recall=0.9).sync(ids, vectors, categories=categories)
    assert entry["type"] == "ivf" and entry["nprobe"] < entry["nlist"]
    store = FaissBackend.open(tmp_path, entry, ids, categories)
    among = {str(i) for i in few}
    for query, hits in zip(vectors[:20], store.search(vectors[:20], 10, category="rare"), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10, among=among)


def test_faiss_keeps_the_exact_index_when_ivf_would_need_most_lists(tmp_path: Path) -> None:
    """Uniform random vectors have no clusters: 0.95 recall would take scanning nearly every list."""
    vectors = unit(np.random.default_rng(3).standard_normal((4000, 64)))
    ids = [str(i) for i in range(4000)]
    entry = FaissBackend(tmp_path, approx_threshold=1000).sync(ids, vectors)
    assert entry["type"] == "flat"
    assert entry["ivf_rejected"]["nprobe"] == 15 and entry["ivf_rejected"]["recall_at_10"] < 0.95
    store = FaissBackend.open(tmp_path, entry, ids)
    assert [i for i, _ in store.search(vectors[:1], 5)[0]] == brute_force(vectors, ids, vectors[0], 5)


def test_qdrant_local_folder_persists_across_clients(tmp_path: Path, data) -> None:
    ids, vectors, queries = data
    ids, vectors = ids[:20], vectors[:20]
    store = new_backend("qdrant", tmp_path, url=str(tmp_path / "qdrant"), collection="items")
    entry = store.sync(ids, vectors, changed=ids, removed=[], reset=True)
    store.close()
    assert entry == {"kind": "qdrant", "url": str(tmp_path / "qdrant"), "collection": "items"}
    reopened = open_backend(entry, tmp_path, ids)
    assert [i for i, _ in reopened.search(queries[:1], 5)[0]] == brute_force(vectors, ids, queries[0], 5)
    reopened.close()
