"""A limit on requests being answered at once, so a burst queues no unbounded work or memory. It counts
requests, not connections: idle keep-alive and half-open sockets take no place (their time is bounded
by the protocol's head and keep-alive timeouts instead)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from fashionrec.serve.limits import send_json_error

BUSY = "the server is busy; try again in a moment"


class InFlightLimit:
    """ASGI middleware answering 503 (with Retry-After) to an HTTP request that arrives while
    `max_requests` others are being answered."""

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_requests:
            await send_json_error(send, 503, BUSY, (b"retry-after", b"1"))
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
