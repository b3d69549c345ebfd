"""Shared by the tests in tests/serve: a real uvicorn in a background thread, and product details for the
demo catalog."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
