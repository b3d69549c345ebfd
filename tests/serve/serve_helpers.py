"""Shared by the tests that serve: a real uvicorn in a background thread, `fashionrec serve` itself in a
subprocess, and product details for the demo catalog."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

import fashionrec
from fashionrec.index.items import Product

# Product details of the demo's dresses; one title holds markup, which the page must show as text.
SCRIPT_TITLE = "<script>window.pwned = true</script><b>Party</b> dress"
DRESSES = {
    f"D{n:06d}": Product(
        SCRIPT_TITLE if n == 5 else f"Dress no. {n}", f"{20 + n}.90", "EUR", f"https://shop.example/dress/{n}"
    )
    for n in range(16)
}
# What `fashionrec serve` prints once its socket listens (with `--port 0`, the port it was given).
SERVING = re.compile(r"serving \d+ items on (?P<url>http://127\.0\.0\.1:\d+/)")


@contextmanager
def live_server(app: ASGIApp | None = None, config: uvicorn.Config | None = None) -> Iterator[str]:
    """uvicorn (plain, or as `config` says) on a free loopback port in a background thread; yields the
    base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config or uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def serve_process(checkpoint: Path, index: Path | str, log: Path, *flags: str) -> Iterator[tuple[str, int]]:
    """`fashionrec serve` (one torch thread, the CPU) on a free loopback port (`--port 0`), once it says
    "serving": that line names the port and is printed only once the socket listens, so the first request
    is answered without a retry. Yields (base URL, pid) and stops it after. Its output goes to `log`."""
    env = {**os.environ, "PYTHONPATH": str(Path(fashionrec.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "fashionrec", "serve", "--checkpoint", str(checkpoint), "--index", str(index)]
    command += ["--host", "127.0.0.1", "--port", "0", "--device", "cpu", *flags]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (serving := SERVING.search(log.read_text(errors="replace"))):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield serving["url"].rstrip("/"), server.pid
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
