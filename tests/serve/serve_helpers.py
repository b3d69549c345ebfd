"""Shared by the tests in tests/serve: a real uvicorn in a background thread, `fashionrec serve` processes,
and product details for the demo catalog."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from fashionrec.index.items import Product

# Product details of the demo's dresses; one title holds markup, which the page must show as text.
SCRIPT_TITLE = "<script>window.pwned = true</script><b>Party</b> dress"
DRESSES = {
    f"D{n:06d}": Product(
        SCRIPT_TITLE if n == 5 else f"Dress no. {n}", f"{20 + n}.90", "EUR", f"https://shop.example/dress/{n}"
    )
    for n in range(16)
}


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


# What `fashionrec serve` prints once its socket listens.
SERVING = re.compile(r"serving \d+ items on (?P<url>http://127\.0\.0\.1:\d+)/")


def wait_serving(process: subprocess.Popen, log: Path, within: float = 120) -> str:
    """The base URL a `fashionrec serve` process writing its output to `log` says it serves on."""
    deadline = time.monotonic() + within
    while not (serving := SERVING.search(log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return serving["url"]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as a service manager stops a server; SIGKILL if it has not ended 30 s later."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)
