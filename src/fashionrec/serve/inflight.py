"""A limit on requests being answered at once, so a burst queues no unbounded work or memory. It counts
requests, not connections: idle keep-alive and half-open sockets take no place (their time is bounded
by the protocol's head and keep-alive timeouts instead)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

BUSY_BODY = json.dumps({"error": "the server is busy; try again in a moment"}).encode()


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
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BUSY_BODY)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BUSY_BODY})
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
