"""uvicorn's HTTP/1.1 protocol with a deadline for request heads, which uvicorn lacks: its keep-alive
timeout starts only after a response, so a connection that never finishes a request head (sending
nothing, or a byte a second) would otherwise stay open for ever."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

# Sent, then the connection closed, to a client that started a request head but did not finish it.
TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeadTimeoutProtocol(H11Protocol):
    """Closes a connection whose next request head is not complete `head_timeout` seconds after the
    connection opened or its first byte arrived (between requests, uvicorn's keep-alive timeout applies)."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests() and self._head_timer is None:
            self._arm()
        self._head_started = True
        super().data_received(data)
        if not self._between_requests():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._head_started = False
        self._head_timer = self.loop.call_later(self.head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return
        if self._head_started:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()
