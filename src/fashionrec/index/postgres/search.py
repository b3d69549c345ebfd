"""Nearest items by inner product: exact while the rows searched number at most the catalog's size
threshold, through pgvector's HNSW index above it.

The rows searched are the catalog's, or a category's. A category of up to the threshold's size is
searched exactly over its own rows, which its GIN index finds, even when the catalog has an HNSW index:
at 100,000 items and a category of 2 % (benchmarks/bench_pgvector.py) that takes about 10 ms and is
exact, while pgvector's filtered HNSW walk took 25 to 35 ms and found only 50 to 75 % of the true top 10
(relaxed or strict order, ef_search 40 to 400): the walk meets a scattered 2 % too rarely.

A larger category goes through the HNSW index with pgvector's iterative index scan (0.8+): the graph is
walked further until `k` rows of the category have been found, checking the category on each row it
visits, up to MAX_SCAN_TUPLES rows; `relaxed_order` finds more true neighbours than `strict_order`, and
the rows found are then sorted by their scores. Should the walk still stop short of `k`, the search is
repeated exactly over the category: a category search never returns fewer items than it has.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import psycopg
from psycopg import sql

from fashionrec.index.postgres.records import COLUMNS, item_from_row
from fashionrec.index.postgres.schema import Tables
from fashionrec.index.store import Hit

# An exact scan of 768-d vectors costs about 5 us a row on the development machine (470 to 500 ms at
# 100,000, benchmarks/bench_pgvector.py; pgvector reads each vector from TOAST), so 10,000 rows take
# about what a FAISS flat scan takes at FAISS's own threshold of 100,000 (20 to 50 ms); HNSW answers in
# about 3 ms.
APPROX_THRESHOLD = 10_000
MIN_EF_SEARCH = 40  # pgvector's default candidate list; raised to k for larger k
MAX_EF_SEARCH = 1000  # pgvector's upper limit
MAX_SCAN_TUPLES = 20_000  # pgvector's default, set explicitly: the walk's bound before the exact fallback

# Planner settings per path (SET LOCAL: they end with the transaction). The exact path forbids index
# scans, so no HNSW index is used; the HNSW path makes scans that ignore the index unattractive, so the
# planner does not trade it for a category's GIN index and a sort.
EXACT = {"enable_indexscan": "off", "enable_seqscan": "on", "enable_bitmapscan": "on"}
APPROXIMATE = {
    "enable_indexscan": "on",
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "hnsw.iterative_scan": "relaxed_order",
    "hnsw.max_scan_tuples": str(MAX_SCAN_TUPLES),
}


def search(
    conn: psycopg.Connection,
    tables: Tables,
    queries: np.ndarray,
    k: int,
    exclude: Collection[str] = (),
    category: str | None = None,
) -> list[list[Hit]]:
    """Top-`k` (item, inner product) per query row, best first, never an id in `exclude`; with `category`,
    only that category's items. Runs in one transaction: every query sees the same catalog."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    results = []
    with conn.transaction():
        ann, dim, threshold, size = conn.execute(
            sql.SQL("SELECT ann, dim, approx_threshold, (category_sizes ->> %s)::bigint FROM {}").format(tables.meta),
            (category,),
        ).fetchone()
        if dim is not None and queries.shape[1] != dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the catalog's vectors {dim}")
        approximate = uses_index(ann == "hnsw", threshold, None if category is None else size or 0)
        params = {"k": k, "exclude": list(exclude), "category": category}
        ef_search = str(min(max(k, MIN_EF_SEARCH), MAX_EF_SEARCH))
        # Settled before the first query: an index created meanwhile must not change the path under it.
        _settings(conn, {**APPROXIMATE, "hnsw.ef_search": ef_search} if approximate else EXACT)
        nearest = _statement(tables, category is not None, bool(exclude), approximate)
        for query in queries:
            rows = conn.execute(nearest, {**params, "q": query}).fetchall()
            if approximate and category is not None and len(rows) < k:
                _settings(conn, EXACT)
                rows = conn.execute(_statement(tables, True, bool(exclude), False), {**params, "q": query}).fetchall()
                _settings(conn, APPROXIMATE)
            results.append([Hit(item_from_row(row[:-1]), -float(row[-1])) for row in rows])
    return results


def uses_index(has_index: bool, threshold: int, category_size: int | None) -> bool:
    """Whether a search goes through the HNSW index: the catalog has one (it holds more than `threshold`
    items), and the rows searched, the catalog's or a category's (`category_size`), are more than that."""
    return has_index and (category_size is None or category_size > threshold)


def _settings(conn: psycopg.Connection, values: dict[str, str]) -> None:
    names = list(values)
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(n), sql.Placeholder()) for n in names
    )
    conn.execute(sql.SQL("SELECT {}").format(calls), [values[n] for n in names])


def _statement(tables: Tables, by_category: bool, excluding: bool, approximate: bool) -> sql.Composed:
    """`<#>` is pgvector's negative inner product: ascending distance is descending score, the order its
    HNSW index (vector_ip_ops) returns. Ties in exact results are broken by id, so they are repeatable."""
    where = [sql.SQL("true")]
    if by_category:
        where.append(sql.SQL("categories @> ARRAY[%(category)s::text]"))
    if excluding:
        where.append(sql.SQL("NOT (id = ANY(%(exclude)s::text[]))"))
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    nearest = sql.SQL(
        "SELECT {columns}, embedding <#> %(q)s AS distance FROM {items} WHERE {where} "
        "ORDER BY distance{tie} LIMIT %(k)s"
    )
    parts = {"columns": columns, "items": tables.items, "where": sql.SQL(" AND ").join(where)}
    if not approximate:
        return nearest.format(**parts, tie=sql.SQL(", id"))
    # The index alone must order the inner query; the outer one sorts what the relaxed walk found.
    inner = nearest.format(**parts, tie=sql.SQL(""))
    return sql.SQL("WITH found AS MATERIALIZED ({}) SELECT {}, distance FROM found ORDER BY distance, id").format(
        inner, columns
    )
