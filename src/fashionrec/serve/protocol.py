"""uvicorn's HTTP/1.1 protocol with the limits on a request head that uvicorn lacks.

A deadline: uvicorn's keep-alive timeout starts only after a response, so a connection that never finishes
a request head (sending nothing, or a byte a second) would otherwise stay open for ever.

A size that holds however the head arrives: h11 bounds only a head that is still incomplete
(`max_incomplete_event_size`), so a head of any length that came in one read, 100 KB say, was parsed,
while 20 KB in ten writes was refused."""

from __future__ import annotations

import asyncio
import json
import re
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# Seconds a refused connection's further bytes are read and dropped before it is closed: closing a socket
# with unread bytes makes the kernel send a reset, which can destroy the answer before the client reads it.
LINGER = 1.0
# Where h11 ends a head: at the first blank line (CRLF CRLF, or bare LFs).
_HEAD_END = re.compile(rb"\n\r?\n")


class HeadTooLarge(Exception):
    """The request head waiting to be parsed is over the limit."""


def head_length(pending: bytes) -> int:
    """Bytes of the request head that starts `pending`: up to its blank line, or all of them while the head
    is incomplete."""
    end = _HEAD_END.search(pending)
    return end.end() if end else len(pending)


class HeadLimitConnection(h11.Connection):
    """h11's server side, refusing a request head (request line and header fields, up to the blank line)
    over `max_head` bytes, whether it arrived in one read or many, and a pipelined one too."""

    def __init__(self, max_head: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self.max_head = max_head

    def next_event(self) -> Any:
        if self.their_state is h11.IDLE:  # what comes next is a request head
            pending, _ = self.trailing_data
            if len(pending) > self.max_head and head_length(pending) > self.max_head:
                raise HeadTooLarge
        return super().next_event()


def error_response(status: int, message: str) -> bytes:
    """A whole `{"error": message}` response that closes the connection, written before any request."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadLimitProtocol(H11Protocol):
    """Answers 408 and closes a connection whose next request head is not complete `head_timeout` seconds
    after the connection opened or its first byte arrived (between requests, uvicorn's keep-alive timeout
    applies); answers 431 to a head over `max_head` bytes, and 400 to one that is not HTTP, in JSON."""

    def __init__(self, *args: Any, head_timeout: float, max_head: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = HeadLimitConnection(max_head)
        self.head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # the rest of a refused request: dropped until the connection closes
            return
        if self._between_requests() and self._head_timer is None:
            self._arm()
        self._head_started = True
        super().data_received(data)
        if not self._between_requests():
            self._disarm()

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except HeadTooLarge:
            limit = self.conn.max_head
            self._refuse(431, f"the request head is over {limit} bytes; send a shorter address or fewer headers")

    def send_400_response(self, msg: str) -> None:
        if not self._between_requests():  # a broken body: uvicorn's own handling
            super().send_400_response(msg)
            return
        self._refuse(400, "the request is not valid HTTP/1.1")

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
            self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that never reached the app, then close: at once for the writing side, and once
        the client closes or LINGER seconds have passed for the reading side."""
        self._disarm()
        self._refused = True
        self.transport.write(error_response(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)
