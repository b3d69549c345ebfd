"""Limits that keep one client from hurting others: request-head and body deadlines, the request-head size,
the in-flight request limit, and clear answers to HEAD and to a cut-off upload."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from rec_fixtures import FakeEncoder, png_header_only
from serve_helpers import live_server

from fashionrec.index import Recommender
from fashionrec.index.images import DEFAULT_LIMITS, ImageLimits
from fashionrec.index.recommend import MAX_K, MAX_TEXT_CHARS
from fashionrec.index.registry import open_catalog
from fashionrec.serve.app import FORM_OVERHEAD, create_app
from fashionrec.serve.inflight import InFlightLimit
from fashionrec.serve.limits import BodyLimit
from fashionrec.serve.server import MAX_HEAD_BYTES, uvicorn_config


@pytest.fixture(scope="module")
def client(fake_recommender: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(fake_recommender)) as client:
        yield client


@pytest.mark.parametrize("url", ["/", "/health", "/items/c001/image", "/static/app.js"])
def test_head_answers_like_get_without_a_body(client: TestClient, url: str) -> None:
    get, head = client.get(url), client.head(url)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length"):
        assert head.headers[name] == get.headers[name]


def test_head_is_405_where_get_is(client: TestClient) -> None:
    assert client.head("/recommend").status_code == client.get("/recommend").status_code == 405


def form(image: bytes, text: str = "is red") -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        + image
        + f'\r\n--B\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n--B--\r\n'.encode()
    )


@pytest.mark.parametrize("keep", [0.1, 0.9, -12])  # in the image, in the text part, before the last boundary
def test_a_cut_off_upload_gets_its_own_message(client: TestClient, fake_recommender: Recommender, keep) -> None:
    body = form(fake_recommender.image("c001")[0])
    headers = {"content-type": "multipart/form-data; boundary=B"}
    whole = client.post("/recommend", content=body, headers=headers)
    assert whole.status_code == 200, whole.text
    cut = body[: int(keep * len(body)) if isinstance(keep, float) else keep]
    response = client.post("/recommend", content=cut, headers=headers)
    assert response.status_code == 400
    assert "cut off" in response.json()["error"] and "feedback text" not in response.json()["error"]


def test_requests_over_the_in_flight_limit_get_503_at_once() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(scope, receive, send) -> None:
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

        limited = InFlightLimit(slow, max_requests=2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(limited), base_url="http://test") as client:
            waiting = [asyncio.create_task(client.get("/")) for _ in range(2)]
            while limited.in_flight < 2:
                await asyncio.sleep(0.01)
            busy = await client.get("/")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "busy" in busy.json()["error"]
            release.set()
            assert [(await w).status_code for w in waiting] == [200, 200]
            assert (await client.get("/")).status_code == 200 and limited.in_flight == 0

    asyncio.run(asyncio.wait_for(scenario(), 30))


async def body_length(scope, receive, send) -> None:
    """Reads the whole body and answers its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(b"%d" % size))]}
    )
    await send({"type": "http.response.body", "body": b"%d" % size})


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.slow
def test_a_body_must_keep_a_minimum_rate() -> None:
    app = BodyLimit(body_length, max_bytes=10_000, timeout=0.5, min_rate=1000)
    with live_server(app) as url:
        slow = connect(url)
        slow.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n")
        start = time.monotonic()
        for _ in range(50):  # a byte every 0.1 s: the deadline stays near 0.5 s
            try:
                slow.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        answer = read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer
        assert time.monotonic() - start < 3
        steady = connect(url)  # 2,000 bytes at ~4,000 bytes/s: past 0.5 s, but never behind
        steady.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\nconnection: close\r\n\r\n")
        for _ in range(20):
            steady.sendall(b"y" * 100)
            time.sleep(0.025)
        assert read_all(steady).endswith(b"\r\n\r\n2000")


@pytest.mark.slow
def test_connections_must_finish_each_request_head_in_time(fake_recommender: Recommender) -> None:
    config = uvicorn_config(create_app(fake_recommender), log_level="warning", head_timeout=0.5, keep_alive_timeout=1)
    with live_server(config=config) as url:
        idle, partial, trickle = (connect(url) for _ in range(3))
        start = time.monotonic()
        partial.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        for byte in b"GET /health HTTP/1.1\r\nhost: x\r\n":  # 0.1 s a byte: never finishes in time
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        assert read_all(idle) == b""  # closed, nothing to answer
        timed_out = read_all(partial)
        assert timed_out.startswith(b"HTTP/1.1 408") and "did not arrive within 0.5 s" in error_of(timed_out)
        assert read_all(trickle).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - start < 4.5
        late = connect(url)
        time.sleep(0.3)
        late.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")  # in time, if late
        assert read_all(late).startswith(b"HTTP/1.1 200")
        reused = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=10)
        sockets = set()
        for _ in range(3):  # 0.9 s in all: each request on a kept-alive connection has its own deadline
            reused.request("GET", "/health")
            assert reused.getresponse().read().startswith(b'{"status":"ok"')
            sockets.add(reused.sock)
            time.sleep(0.3)
        assert len(sockets) == 1
        assert httpx.get(f"{url}/health").status_code == 200


@pytest.fixture(scope="module")
def served(fake_recommender: Recommender) -> Iterator[str]:
    """The app under `fashionrec serve`'s uvicorn settings, in a background thread: its base URL."""
    with live_server(config=uvicorn_config(create_app(fake_recommender), log_level="warning")) as url:
        yield url


def head_of(size: int, field_bytes: int) -> bytes:
    """A `GET /health` request head of exactly `size` bytes up to its blank line, padded with header fields
    of `field_bytes` bytes each, the first one taking what is left over."""
    start = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    room = size - len(start) - 2
    count = max(room // field_bytes, 1)
    fields = [b"x-pad-%05d: " % i for i in range(count)]
    values = [field_bytes - len(name) - 2 for name in fields]
    values[0] += room - count * field_bytes
    lines = [name + b"v" * value + b"\r\n" for name, value in zip(fields, values, strict=True)]
    head = start + b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


def send_in_pieces(url: str, data: bytes, writes: int) -> bytes:
    """Everything answered to `data` sent in `writes` separate writes on a new connection."""
    sock = connect(url)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    step = -(-len(data) // writes)
    for start in range(0, len(data), step):
        sock.sendall(data[start : start + step])
        if writes > 1:
            time.sleep(0.02)  # each piece its own read on the server
    with sock:
        return read_all(sock)


def error_of(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.mark.parametrize("writes", [1, 10], ids=["one write", "ten writes"])
@pytest.mark.parametrize("field_bytes", [MAX_HEAD_BYTES, 40], ids=["one long field", "many short fields"])
def test_a_request_head_over_16_kib_gets_431_however_it_arrives(served: str, field_bytes: int, writes: int) -> None:
    assert MAX_HEAD_BYTES == 16 * 1024  # the figure docs/serving.md gives
    under = send_in_pieces(served, head_of(MAX_HEAD_BYTES, field_bytes), writes)
    assert under.startswith(b"HTTP/1.1 200 "), under[:200]
    over = send_in_pieces(served, head_of(MAX_HEAD_BYTES + 1, field_bytes), writes)
    assert over.startswith(b"HTTP/1.1 431 "), over[:200]
    assert b"\r\nconnection: close\r\n" in over and "over 16384 bytes" in error_of(over)


def test_long_and_pipelined_heads_get_431_and_the_server_goes_on(served: str) -> None:
    huge = send_in_pieces(served, head_of(100_000, 100_000), 1)  # taken whole in one read before
    assert huge.startswith(b"HTTP/1.1 431 ")
    kept_alive = head_of(200, 200).replace(b"connection: close", b"connection: keep-alive")
    pipelined = send_in_pieces(served, kept_alive + head_of(MAX_HEAD_BYTES + 1, 40), 1)
    assert pipelined.startswith(b"HTTP/1.1 200 ") and pipelined.count(b"HTTP/1.1 431 ") == 1
    not_http = send_in_pieces(served, b"HELLO\r\n\r\n", 1)
    assert not_http.startswith(b"HTTP/1.1 400 ") and "not valid HTTP" in error_of(not_http)
    assert httpx.get(f"{served}/health").status_code == 200


@pytest.fixture(scope="module")
def shipped(fake_recommender: Recommender) -> Iterator[TestClient]:
    """The fake catalog's app with the upload limits `fashionrec serve` has."""
    recommender = Recommender(FakeEncoder(), open_catalog(fake_recommender.catalog.location), DEFAULT_LIMITS)
    with TestClient(create_app(recommender)) as client:
        yield client
    recommender.close()


def test_uploads_are_limited_at_the_documented_figures(shipped: TestClient, fake_recommender: Recommender) -> None:
    """docs/serving.md: an image of up to 10 MiB and 40 megapixels, a body of up to 10 MiB + 64 KiB, text of
    up to 500 characters, k up to 100; one more of any of them is refused."""
    assert DEFAULT_LIMITS == ImageLimits(max_bytes=10 * 2**20, max_pixels=40_000_000)
    assert (FORM_OVERHEAD, MAX_TEXT_CHARS, MAX_K) == (64 * 1024, 500, 100)

    def ask(image: bytes, text: str = "is red", k: str = "5") -> httpx.Response:
        return shipped.post("/recommend", files={"image": ("a.png", image)}, data={"text": text, "k": k})

    picture = fake_recommender.image("c001")[0]  # a PNG: decoders stop at its end, so bytes after it are padding
    largest = picture + b"\0" * (10 * 2**20 - len(picture))
    assert ask(largest, "x" * 500, "100").status_code == 200  # 501 characters and k=101: tests/serve/test_api.py
    refused = ask(largest + b"\0")
    assert refused.status_code == 413 and "10485761 bytes; the limit is 10485760" in refused.json()["error"]
    at_limit = ask(png_header_only(8000, 5000))  # 40,000,000 pixels: decoded, and found to have no pixel data
    assert at_limit.status_code == 400 and "truncated or corrupt" in at_limit.json()["error"]
    over = ask(png_header_only(8000, 5001))
    assert over.status_code == 413 and "the limit is 40000000 pixels" in over.json()["error"]
    multipart = {"content-type": "multipart/form-data; boundary=B"}
    body = shipped.post("/recommend", content=b"\0" * (10 * 2**20 + FORM_OVERHEAD + 1), headers=multipart)
    assert body.status_code == 413 and f"larger than {10 * 2**20 + 64 * 1024} bytes" in body.json()["error"]
