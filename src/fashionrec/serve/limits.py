"""What a request body must do before it is parsed: stay under a size (a multipart upload is otherwise
spooled to disk whole), arrive in time, and, for a multipart form, arrive whole."""

from __future__ import annotations

import asyncio
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A body gets BODY_TIMEOUT seconds, plus one more for every BODY_MIN_RATE bytes it has sent: a client
# sending a byte a second is cut off after 10 s, one uploading 10 MB at 50 kB/s or more never is.
BODY_TIMEOUT = 10.0
BODY_MIN_RATE = 50_000
_BOUNDARY = re.compile(rb'boundary="?([^";,]+)"?', re.IGNORECASE)


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class BodyLimit:
    """ASGI middleware answering 413 once a request body passes `max_bytes` (whether or not the client
    sent a Content-Length: a chunked upload is counted as it arrives), 408 when it arrives too slowly,
    and 400 when a multipart body ends before its closing boundary (a cut-off upload)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout: float = BODY_TIMEOUT, min_rate: float = BODY_MIN_RATE
    ) -> None:
        self.app = app
        self.max_bytes, self.timeout, self.min_rate = max_bytes, timeout, min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, 413, self._too_large())
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        closing = _closing_delimiter(headers.get(b"content-type", b""))
        tail = b""  # the end of what arrived, to find a closing delimiter split across messages
        received = 0
        complete = ended = started = False

        async def checked_receive() -> Message:
            nonlocal received, tail, complete, ended
            if complete:  # after the body only a disconnect can come: no deadline
                return await receive()
            deadline = start + self.timeout + received / self.min_rate
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise _Rejected(408, f"the request body arrived too slowly ({received} bytes so far)") from None
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                raise _Rejected(413, self._too_large())
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if closing is not None and not ended:
                window = tail + body
                ended, tail = closing in window, window[1 - len(closing) :]
                if complete and not ended and message["type"] == "http.request":
                    raise _Rejected(400, "the multipart body is cut off before its end; send the whole form again")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, checked_receive, tracked_send)
        except _Rejected as e:
            if started:
                raise
            await self._reject(send, e.status, e.message)

    def _too_large(self) -> str:
        return f"the request is larger than {self.max_bytes} bytes"

    @staticmethod
    async def _reject(send: Send, status: int, message: str) -> None:
        # The unread rest of the body may still be on the wire: close rather than reuse the connection.
        await send_json_error(send, status, message, (b"connection", b"close"))


async def send_json_error(send: Send, status: int, message: str, *headers: tuple[bytes, bytes]) -> None:
    """An `{"error": message}` response sent from ASGI middleware, before the app has answered."""
    body = json.dumps({"error": message}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def _closing_delimiter(content_type: bytes) -> bytes | None:
    """`--boundary--` of a multipart/form-data body, or None for other bodies."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    match = _BOUNDARY.search(content_type)
    return b"--" + match.group(1) + b"--" if match else None
