"""`/recommend` latency and throughput of `fashionrec serve` with the tiny preset on CPU.

    venv/bin/python benchmarks/bench_serve.py [--requests 200] [--concurrency 1 8]

Builds demo data, a random-init tiny checkpoint and its index in a temp folder, starts the real
`fashionrec serve` in a subprocess on a free loopback port, and sends multipart queries from client
threads. Prints p50/p99 latency and requests/s per concurrency; writes .bench/serve.json.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

TEXTS = ["is red", "has long sleeves", "is blue and striped", "is a maxi dress", "is plain and black"]


def prepare(work: Path, images: int) -> tuple[Path, Path, Path]:
    """(checkpoint, index, images folder), reusing what an earlier run made."""
    import torch

    from fashionrec.data.demo import make_demo_data
    from fashionrec.index import build_index
    from fashionrec.model import create_model, save_pretrained

    folder = work / "demo" / "images"
    if not folder.is_dir():
        make_demo_data(work / "demo", images=images)
    checkpoint = work / "tiny"
    if not checkpoint.is_dir():
        torch.manual_seed(0)
        save_pretrained(create_model("tiny", TEXTS, pretrained=False), checkpoint)
    build_index(checkpoint, folder, work / "index", cache_dir=work / "cache", device="cpu")
    return checkpoint, work / "index", folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path, index: Path, port: int, threads: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fashionrec",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--index",
        str(index),
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


def load(url: str, queries: list[tuple[bytes, str]], concurrency: int, k: int) -> dict[str, float]:
    """Send every query once, `concurrency` at a time; each client thread keeps one connection."""
    clients = [httpx.Client(base_url=url, timeout=120) for _ in range(concurrency)]

    def one(i: int) -> float:
        image, text = queries[i]
        start = time.perf_counter()
        response = clients[i % concurrency].post(
            "/recommend", files={"image": ("q.png", image, "image/png")}, data={"text": text, "k": str(k)}
        )
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
    # Outside the repository, where a cleanup of .bench/ cannot pull the catalog from under the server.
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fashionrec-bench-serve")
    parser.add_argument("--out", type=Path, default=Path(".bench/serve.json"))
    args = parser.parse_args()

    checkpoint, index, folder = prepare(args.work, args.images)
    references = sorted(folder.glob("*.png"))
    queries = [(references[i % len(references)].read_bytes(), TEXTS[i % len(TEXTS)]) for i in range(args.requests)]
    port = free_port()
    server = start_server(checkpoint, index, port, args.threads)
    try:
        url = f"http://127.0.0.1:{port}"
        load(url, queries[:20], 2, args.k)  # warm-up
        rows = [load(url, queries, c, args.k) for c in args.concurrency]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"\n/recommend, tiny preset on CPU ({os.cpu_count()} CPUs, server --threads {args.threads}), "
        f"{args.images}-item catalog, k={args.k}"
    )
    print(f"{'concurrency':>11} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    for r in rows:
        print(
            f"{r['concurrency']:>11} {r['requests']:>9} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['requests_per_s']:>7.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpus": os.cpu_count(), "threads": args.threads, "catalog": args.images, "k": args.k, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
