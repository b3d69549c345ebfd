"""Search latency on random 768-d vectors: exact numpy, FAISS flat, and the IVF index `fashionrec index`
tries above its size threshold (recall@10 against the exact ranking, per nprobe).

    venv/bin/python benchmarks/bench_search.py [--sizes 100000 1000000] [--queries 200] [--clustered]

Single-query latency (one request's search), all cores. Prints a table; writes .bench/search.json.
A script, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import faiss
import numpy as np
from common import unit_vectors

from fashionrec.index.faiss_backend import MAX_PROBE_FRACTION, TARGET_RECALL, train_ivf, tune_nprobe

DIM = 768
K = 10


def timed(search, queries: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """p50/p99 in ms over one-at-a-time queries, and the top-K rows found."""
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q[None, :]))
        times.append((time.perf_counter() - start) * 1000)
    stats = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    return stats, np.stack(found)


def numpy_search(vectors: np.ndarray):
    def search(q: np.ndarray) -> np.ndarray:
        scores = vectors @ q[0]
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    return search


def faiss_search(index):
    return lambda q: index.search(q, K)[1][0]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def bench_size(n: int, n_queries: int, clustered: bool) -> list[dict]:
    print(f"\n{n:,} vectors x {DIM}: generating...", flush=True)
    centres = unit_vectors(1000, DIM, seed=2) if clustered else None
    vectors = unit_vectors(n, DIM, seed=0, centres=centres)
    queries = unit_vectors(n_queries, DIM, seed=1, centres=centres)
    rows = []
    stats, truth = timed(numpy_search(vectors), queries)
    rows.append({"n": n, "method": "numpy exact", "recall_at_10": 1.0, **stats})

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    build = time.perf_counter() - start
    stats, found = timed(faiss_search(flat), queries)
    rows.append(
        {"n": n, "method": "faiss flat (exact)", "build_s": build, "recall_at_10": recall(found, truth), **stats}
    )
    del flat

    start = time.perf_counter()
    ivf = train_ivf(vectors)
    build = time.perf_counter() - start
    nprobe, tuned_recall = tune_nprobe(ivf, vectors, TARGET_RECALL)
    kept = tuned_recall >= TARGET_RECALL
    verdict = "IVF" if kept else "the flat index"
    print(
        f"IVF{ivf.nlist} trained in {build:.1f} s; tuning stopped at nprobe {nprobe} with recall "
        f"{tuned_recall:.3f}: `fashionrec index` would keep {verdict}",
        flush=True,
    )
    probes = {8, 32, 128, int(ivf.nlist * MAX_PROBE_FRACTION), ivf.nlist} | ({nprobe} if kept else set())
    for probe in sorted(probes):
        ivf.nprobe = probe
        stats, found = timed(faiss_search(ivf), queries)
        chosen = " (chosen)" if kept and probe == nprobe else ""
        rows.append(
            {
                "n": n,
                "method": f"faiss ivf{ivf.nlist} nprobe {probe}{chosen}",
                "build_s": build,
                "recall_at_10": recall(found, truth),
                **stats,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clustered", action="store_true", help="vectors around 1000 centres, not uniform")
    parser.add_argument(
        "--faiss-threads",
        type=int,
        default=1,
        help="OpenMP threads per FAISS search (default 1, as `fashionrec serve` runs it)",
    )
    parser.add_argument("--out", type=Path, default=Path(".bench/search.json"))
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.faiss_threads)
    rows = [row for n in args.sizes for row in bench_size(n, args.queries, args.clustered)]
    kind = "clustered" if args.clustered else "uniform random"
    print(
        f"\nsingle-query search, {kind} vectors, k={K}, {os.cpu_count()} CPUs, "
        f"FAISS threads {args.faiss_threads}, faiss {faiss.__version__}, numpy {np.__version__}"
    )
    print(f"{'vectors':>10}  {'method':<38} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>9} {'build s':>8}")
    for r in rows:
        build = f"{r['build_s']:.1f}" if "build_s" in r else "-"
        print(
            f"{r['n']:>10,}  {r['method']:<38} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['recall_at_10']:>9.3f} {build:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "faiss_threads": args.faiss_threads, "dim": DIM, "k": K, "data": kind}
    args.out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
