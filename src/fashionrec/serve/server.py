"""`fashionrec serve`: load the model once, then answer HTTP until interrupted."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from fashionrec.index.recommend import Recommender
from fashionrec.index.store import StoreOptions
from fashionrec.options import DEFAULT_DEVICE
from fashionrec.serve.app import create_app
from fashionrec.serve.inflight import InFlightLimit
from fashionrec.serve.listen import url
from fashionrec.serve.protocol import HeadLimitProtocol

if TYPE_CHECKING:
    import uvicorn

# Requests beyond this many in flight get a 503 at once instead of queueing without bound.
MAX_IN_FLIGHT = 64
# A connection must finish each request head this many seconds after it opens or starts the request.
HEAD_TIMEOUT = 10.0
# A request head (request line and header fields) over this many bytes gets a 431.
MAX_HEAD_BYTES = 16 * 1024
# An idle keep-alive connection is closed after this many seconds.
KEEP_ALIVE_TIMEOUT = 5
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def serve(
    checkpoint: Path,
    location: str | Path,
    listener: socket.socket,
    device: str = DEFAULT_DEVICE,
    threads: int = 1,
    text_model: str | None = None,
    *,
    admin_token: str | None = None,
    options: StoreOptions | None = None,
) -> None:
    """Serve on `listener`, a socket `fashionrec.serve.listen.bind` made before the model loaded (so a port
    in use was reported at once, and "serving" is printed only once the address is ours). `admin_token`
    enables the admin routes; `options` carry store credentials (a Qdrant API key)."""
    import uvicorn

    set_cpu_threads(threads)
    return_freed_memory()
    with listener:
        recommender = Recommender.open(
            Path(checkpoint), location, device=device, text_model=text_model, options=options
        )
        try:
            admin = "; admin routes on" if admin_token else ""
            count = recommender.catalog.count()
            print(f"serving {count} items on {url(listener)}{admin} (Ctrl-C stops)", flush=True)
            host, port = listener.getsockname()[:2]
            app = create_app(recommender, admin_token)
            uvicorn.Server(uvicorn_config(app, host, port)).run(sockets=[listener])
        finally:
            recommender.close()


def uvicorn_config(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    max_in_flight: int = MAX_IN_FLIGHT,
    head_timeout: float = HEAD_TIMEOUT,
    max_head: int = MAX_HEAD_BYTES,
    keep_alive_timeout: int = KEEP_ALIVE_TIMEOUT,
) -> uvicorn.Config:
    """The server's limits: requests in flight, time and size for request heads, time between requests
    (request bodies are bounded by `BodyLimit`)."""
    import uvicorn

    return uvicorn.Config(
        InFlightLimit(app, max_in_flight),
        host=host,
        port=port,
        http=partial(HeadLimitProtocol, head_timeout=head_timeout, max_head=max_head),
        ws="none",
        timeout_keep_alive=keep_alive_timeout,
        log_level=log_level,
    )


def return_freed_memory(threshold: int = 4 * 2**20) -> None:
    """Have glibc give blocks of `threshold` bytes or more back to the system as soon as they are freed.

    By default its threshold grows to the largest block freed (up to 32 MB), after which Pillow's 16 MB
    image blocks come from per-thread arenas that keep them. Measured with 16 concurrent 36 MP PNG
    decodes: +2.2 GB peak RSS and +350 MB kept after by default, +290 MB and +4 MB with this. Does
    nothing on other C libraries.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        pass


def set_cpu_threads(threads: int) -> None:
    """OpenMP threads for the model's CPU kernels and for each FAISS search.

    A server's parallelism comes from concurrent requests (decoded in parallel, batched into one model
    call); OpenMP threads waiting for each other only add to it when the machine is busy. Measured on
    a shared 2-CPU machine: a tiny-preset request took 150-670 ms with torch on 2 threads, 10-20 ms on
    one, and a 100k flat FAISS search ~140 ms on 2 threads against ~28 ms on one. More threads pay
    off for a large model on a dedicated many-core CPU: `--threads N`.
    """
    from fashionrec.device import set_threads

    set_threads(threads)
    try:
        import faiss
    except ImportError:  # a Qdrant-only install
        return
    faiss.omp_set_num_threads(threads)
