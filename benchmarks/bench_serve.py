"""`/recommend` latency and throughput of `fashionrec serve` with the tiny preset on CPU, per catalog store.

    venv/bin/python benchmarks/bench_serve.py [--requests 200] [--concurrency 1 8] [--stores faiss ...]

Builds demo data and a random-init tiny checkpoint in a temp folder, then for each store in `STORES` (a
function that builds the demo catalog there and returns its location) starts the real `fashionrec serve`
on it in a subprocess on a free loopback port, and sends queries from client threads, four kinds: an
uploaded photo, a catalog item as the reference (`item_id`), and each of those restricted to the
reference's category; each row is measured on every store in turn, so the stores meet the same load.
Prints p50/p99 latency and requests/s per kind and concurrency, the stores side by side; writes
.bench/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

TEXTS = ["is red", "has long sleeves", "is blue and striped", "is a maxi dress", "is plain and black"]


def prepare(work: Path, images: int) -> tuple[Path, Path]:
    """(checkpoint, images folder), reusing what an earlier run made."""
    import torch

    from fashionrec.data.demo import make_demo_data
    from fashionrec.model import create_model, save_pretrained

    folder = work / "demo" / "images"
    if not folder.is_dir():
        make_demo_data(work / "demo", images=images)
    checkpoint = work / "tiny"
    if not checkpoint.is_dir():
        torch.manual_seed(0)
        save_pretrained(create_model("tiny", TEXTS, pretrained=False), checkpoint)
    return checkpoint, folder


def build_demo(work: Path, checkpoint: Path, folder: Path, location: str) -> str:
    """The demo catalog (with the demo's categories) at `location`, brought up to date."""
    from fashionrec.index import build_index
    from fashionrec.index.categories import from_split_files

    categories = from_split_files(folder.parent)
    build_index(checkpoint, folder, location, cache_dir=work / "cache", device="cpu", categories=categories)
    return location


def faiss_catalog(work: Path, checkpoint: Path, folder: Path) -> str:
    """An index folder with FAISS."""
    return build_demo(work, checkpoint, folder, str(work / "index-faiss"))


def postgres_catalog(work: Path, checkpoint: Path, folder: Path) -> str:
    """PostgreSQL with pgvector: an embedded server in the work folder (this process runs it until it ends;
    the server subprocess reaches it through its Unix socket)."""
    from fashionrec.index.postgres.embedded import start

    return build_demo(work, checkpoint, folder, start(work / "postgres"))


# Each store compared: name -> build the demo catalog there, returning its location (`serve --index`).
STORES: dict[str, Callable[[Path, Path, Path], str]] = {"faiss": faiss_catalog, "postgres": postgres_catalog}


# The demo's id prefix says its category.
CATEGORY = {"D": "dress", "S": "shirt", "T": "toptee"}
KINDS = ("upload", "item_id", "upload + category", "item_id + category")


def requests_of(kind: str, references: list[Path], count: int, k: int) -> list[tuple[dict | None, dict]]:
    """(multipart files or None, form fields) for `count` queries of one kind, cycling through references."""
    specs = []
    for i in range(count):
        ref, text = references[i % len(references)], TEXTS[i % len(TEXTS)]
        data = {"text": text, "k": str(k)}
        files = None
        if kind.startswith("upload"):
            files = {"image": ("q.png", ref.read_bytes(), "image/png")}
        else:
            data["item_id"] = ref.stem
        if kind.endswith("category"):
            data["category"] = CATEGORY[ref.stem[0]]
        specs.append((files, data))
    return specs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path, index: str, port: int, threads: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fashionrec",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--index",
        index,
        "--port",
        str(port),
        "--device",
        "cpu",
        "--threads",
        str(threads),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def load(url: str, queries: list[tuple[dict | None, dict]], concurrency: int) -> dict[str, float]:
    """Send every query once, `concurrency` at a time; each client thread keeps one connection."""
    clients = [httpx.Client(base_url=url, timeout=120) for _ in range(concurrency)]

    def one(i: int) -> float:
        files, data = queries[i]
        start = time.perf_counter()
        response = clients[i % concurrency].post("/recommend", files=files, data=data)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"request {i}: {response.status_code} {response.text[:200]}")
        return elapsed * 1000

    def worker(j: int) -> list[float]:
        """Requests j, j+c, j+2c, ... in turn, so no two threads ever share a client."""
        return [one(i) for i in range(j, len(queries), concurrency)]

    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        latencies = [t for chunk in pool.map(worker, range(concurrency)) for t in chunk]
        wall = time.perf_counter() - start
    for client in clients:
        client.close()
    return {
        "concurrency": concurrency,
        "requests": len(queries),
        "requests_per_s": len(queries) / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=600, help="demo catalog size")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads (default: 1)")
    parser.add_argument("--stores", nargs="+", choices=list(STORES), default=list(STORES), help="catalog stores")
    # Outside the repository, where a cleanup of .bench/ cannot pull the catalog from under the server.
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fashionrec-bench-serve")
    parser.add_argument("--out", type=Path, default=Path(".bench/serve.json"))
    args = parser.parse_args()

    checkpoint, folder = prepare(args.work, args.images)
    references = sorted(folder.glob("*.png"))
    rows = []
    with ExitStack() as servers:
        urls = {}
        for store in args.stores:
            location = STORES[store](args.work, checkpoint, folder)
            port = free_port()
            server = start_server(checkpoint, location, port, args.threads)
            servers.callback(stop, server)
            urls[store] = f"http://127.0.0.1:{port}"
            load(urls[store], requests_of("upload", references, 20, args.k), 2)  # warm-up
        # Row by row, the stores one after the other: a change in the machine's load meets them all alike.
        for kind in KINDS:
            queries = requests_of(kind, references, args.requests, args.k)
            for concurrency in args.concurrency:
                for store in args.stores:
                    rows.append({"store": store, "kind": kind, **load(urls[store], queries, concurrency)})
    print(
        f"\n/recommend, tiny preset on CPU ({os.cpu_count()} CPUs, server --threads {args.threads}), "
        f"{args.images}-item catalog in 3 categories, k={args.k}, {args.requests} requests per row"
    )
    print(side_by_side(rows, args.stores))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpus": os.cpu_count(), "threads": args.threads, "catalog": args.images, "k": args.k, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def side_by_side(rows: list[dict], stores: list[str]) -> str:
    """One line per query kind and concurrency; p50, p99 and req/s of each store next to each other."""
    cells = {(r["kind"], r["concurrency"], r["store"]): r for r in rows}
    header = f"{'reference':<20} {'conc.':>5}" + "".join(
        f" | {s + ' p50 ms':>14} {'p99 ms':>7} {'req/s':>6}" for s in stores
    )
    lines = [header]
    for kind, concurrency in dict.fromkeys((r["kind"], r["concurrency"]) for r in rows):
        line = f"{kind:<20} {concurrency:>5}"
        for store in stores:
            r = cells[(kind, concurrency, store)]
            line += f" | {r['p50_ms']:>14.1f} {r['p99_ms']:>7.1f} {r['requests_per_s']:>6.1f}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
