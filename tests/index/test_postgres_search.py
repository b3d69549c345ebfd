"""Search in a PostgreSQL catalog: the exact path must equal the brute-force ranking; the HNSW path must
find k items of a small category with high recall, and never fewer than the category has."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from pg_fixtures import fill
from rec_fixtures import brute_force, labels, members, unit

from fashionrec.index.postgres import search as pg_search


@pytest.fixture
def data() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"item/{i:04d}" for i in range(300)]
    return ids, unit(rng.standard_normal((300, 24))), unit(rng.standard_normal((5, 24)))


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres, as real embeddings cluster by product type and colour."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim)))


def ranked(hits) -> list[str]:
    return [hit.item.id for hit in hits]


def test_exact_search_is_the_brute_force_ranking_for_every_category_with_exclusions(pg_catalog, data) -> None:
    ids, vectors, queries = data
    categories = labels(ids)
    assert fill(pg_catalog, ids, vectors, categories)["search"] == "exact"
    hits = pg_catalog.search(queries, 10)
    for query, found in zip(queries, hits, strict=True):
        assert ranked(found) == brute_force(vectors, ids, query, 10)
        np.testing.assert_allclose([h.score for h in found], np.sort(vectors @ query)[::-1][:10], rtol=1e-4, atol=1e-5)
    assert {tuple(h.item.categories) for h in hits[0]} <= {tuple(c) for c in categories}  # whole items come back
    for name in ("dress", "shirt", "toptee"):
        among = members(ids, categories, name)
        exclude = set(brute_force(vectors, ids, queries[0], 3, among=among))  # the category's best three
        for query, found in zip(queries, pg_catalog.search(queries, 12, exclude, category=name), strict=True):
            assert ranked(found) == brute_force(vectors, ids, query, 12, exclude, among)
    assert pg_catalog.search(queries[:1], 5, category="no such category") == [[]]


@pytest.mark.slow
def test_a_two_percent_category_above_the_threshold_is_walked_through_hnsw_with_high_recall(pg_open) -> None:
    pg_catalog = pg_open(approx_threshold=50)
    n, dim, k = 4000, 32, 10
    vectors = clustered(n, dim, clusters=50, seed=1)
    ids = [f"p{i:05d}" for i in range(n)]
    rare = set(np.random.default_rng(2).choice(n, size=n // 50, replace=False).tolist())  # 2 %, scattered
    categories = [("rare", "all") if i in rare else ("all",) for i in range(n)]
    assert fill(pg_catalog, ids, vectors, categories)["search"] == "hnsw"  # 80 rare items > 50
    assert pg_catalog.categories() == {"all": n, "rare": n // 50}
    queries = clustered(40, dim, clusters=50, seed=3)
    among = {ids[i] for i in rare}
    hits = pg_catalog.search(queries, k, category="rare")
    recall = []
    for query, found in zip(queries, hits, strict=True):
        found_ids = ranked(found)
        assert len(found_ids) == k and set(found_ids) <= among
        scores = [h.score for h in found]
        assert scores == sorted(scores, reverse=True)
        recall.append(len(set(found_ids) & set(brute_force(vectors, ids, query, k, among=among))) / k)
    assert np.mean(recall) >= 0.95, np.mean(recall)
    # Unfiltered, with exclusions: k items, none excluded.
    exclude = set(ranked(hits[0][:5]))
    for found in pg_catalog.search(queries, k, exclude):
        assert len(found) == k and not exclude & set(ranked(found))


def test_only_searches_of_more_rows_than_the_threshold_use_the_index() -> None:
    assert pg_search.uses_index(True, 1000, None)  # the whole catalog: it has the index, being larger
    assert pg_search.uses_index(True, 1000, 1001)
    assert not pg_search.uses_index(True, 1000, 1000)  # a category of up to the threshold: exact
    assert not pg_search.uses_index(True, 1000, 0)
    assert not pg_search.uses_index(False, 1000, None)
    assert not pg_search.uses_index(False, 1000, 5000)


def test_the_hnsw_path_uses_the_index_and_the_exact_path_does_not(pg_open, pg_url) -> None:
    """What the planner does with the settings each path makes (EXPLAIN of the statements search runs)."""
    vectors = clustered(600, 8, clusters=10, seed=4)
    pg_catalog = pg_open(approx_threshold=100)
    fill(pg_catalog, [f"p{i}" for i in range(600)], vectors)
    tables = pg_catalog.tables
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        plans = {}
        for approximate, settings in ((True, pg_search.APPROXIMATE), (False, pg_search.EXACT)):
            pg_search._settings(conn, settings)
            statement = pg_search._statement(tables, by_category=True, excluding=True, approximate=approximate)
            params = {"q": str(vectors[0].tolist()), "k": 5, "exclude": ["p1"], "category": "all"}
            explain = psycopg.sql.SQL("EXPLAIN {}").format(statement)
            plans[approximate] = "\n".join(row[0] for row in conn.execute(explain, params))
    assert "items_embedding" in plans[True]
    assert "items_embedding" not in plans[False]


def test_categories_up_to_the_threshold_are_exact_on_an_hnsw_catalog_and_short_walks_fall_back(
    pg_open, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_catalog = pg_open(approx_threshold=20)
    n, dim = 1500, 16
    vectors = clustered(n, dim, clusters=20, seed=5)
    ids = [f"p{i:04d}" for i in range(n)]
    categories = [("tiny",) if i % 100 == 7 else ("two",) if i % 50 == 3 else ("big",) for i in range(n)]
    assert fill(pg_catalog, ids, vectors, categories)["search"] == "hnsw"
    queries = clustered(5, dim, clusters=20, seed=6)
    # 15 items, at most the threshold: searched exactly over its rows.
    tiny = members(ids, categories, "tiny")
    for query, found in zip(queries, pg_catalog.search(queries, 10, {"p0007"}, category="tiny"), strict=True):
        assert ranked(found) == brute_force(vectors, ids, query, 10, {"p0007"}, tiny)
    # 30 items, above the threshold: the HNSW walk, bounded to 100 rows here (20,000 by default), finds
    # few of them, so the search is repeated exactly.
    monkeypatch.setitem(pg_search.APPROXIMATE, "hnsw.max_scan_tuples", "100")
    two = members(ids, categories, "two")
    for query, found in zip(queries, pg_catalog.search(queries, 40, category="two"), strict=True):
        assert ranked(found) == brute_force(vectors, ids, query, 40, among=two)
