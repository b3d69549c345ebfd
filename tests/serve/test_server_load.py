"""`fashionrec serve` itself, in a subprocess on loopback: `--threads` is in force, requests over the
in-flight limit get a 503, idle and trickling sockets do not lock clients out, and memory stays bounded
under concurrent maximum-size uploads."""

from __future__ import annotations

import io
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image
from rec_fixtures import demo_images, tiny_checkpoint
from serve_helpers import serve_process

from fashionrec.index import build_index
from fashionrec.serve.server import HEAD_TIMEOUT, MAX_IN_FLIGHT

pytestmark = pytest.mark.slow
MEMORY_GOAL = 600 * 2**20  # peak RSS above the idle server's, under 16 concurrent 36 MP uploads
THREADS = 2  # `--threads`; the server's environment says OMP_NUM_THREADS=1, so 2 can only come from the flag


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """(base URL, server pid, images folder) of `fashionrec serve` over the tiny model and demo images."""
    root = tmp_path_factory.mktemp("served")
    checkpoint = tiny_checkpoint(root / "ckpt")
    images = demo_images(root / "demo")
    build_index(checkpoint, images, root / "index", cache_dir=root / "cache", device="cpu")
    with serve_process(checkpoint, root / "index", root / "server.log", "--threads", str(THREADS)) as (url, pid):
        yield url, pid, images


def ask(url: str, image: bytes, name: str = "query.png", timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{url}/recommend", files={"image": (name, image)}, data={"text": "is red", "k": "5"}, timeout=timeout
    )


def test_serving_is_said_once_the_port_is_bound(served: tuple[str, int, Path]) -> None:
    """`--port 0` takes a free port; the "serving ... on URL" line names it, and is printed only once the
    socket listens: the first request to it is answered, with no retry."""
    assert httpx.get(f"{served[0]}/health", timeout=30).status_code == 200


def test_threads_flag_is_in_force(served: tuple[str, int, Path]) -> None:
    assert httpx.get(f"{served[0]}/health", timeout=5).json()["threads"] == THREADS


def multipart(fields: dict[str, str], boundary: str = "fashionrec-test-boundary") -> tuple[str, bytes]:
    """(content type, body) of a multipart form of plain fields."""
    parts = [f'--{boundary}\r\ncontent-disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return f"multipart/form-data; boundary={boundary}", ("".join(parts) + f"--{boundary}--\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length, read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), body


def health_status_becomes(url: str, status: int, within: float = 5) -> httpx.Response:
    deadline = time.monotonic() + within
    while (response := httpx.get(f"{url}/health", timeout=5)).status_code != status:
        assert time.monotonic() < deadline, f"/health kept answering {response.status_code}, not {status}"
        time.sleep(0.05)
    return response


def test_requests_over_the_in_flight_limit_get_503_and_held_ones_complete(served: tuple[str, int, Path]) -> None:
    """docs/serving.md: with 64 requests in flight, the 65th gets a 503 with Retry-After at once. The 64
    here are /recommend requests whose bodies are half sent (the app is answering them, waiting for the
    rest); they then finish and are answered."""
    url, _, images = served
    assert MAX_IN_FLIGHT == 64  # the figure docs/serving.md gives
    port = int(url.rsplit(":", 1)[1])
    content_type, body = multipart({"item_id": sorted(images.glob("*.png"))[0].stem, "text": "is red", "k": "5"})
    head = f"POST /recommend HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
    head += f"content-length: {len(body)}\r\n\r\n"
    half = len(body) // 2
    assert health_status_becomes(url, 200).status_code == 200
    with ExitStack() as stack:
        held = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30)) for _ in range(64)]
        started = time.monotonic()
        for sock in held:
            sock.sendall(head.encode() + body[:half])
        busy = health_status_becomes(url, 503)
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
        turned_away = ask(url, sorted(images.glob("*.png"))[1].read_bytes(), timeout=5)
        assert turned_away.status_code == 503  # uploads too, at once: nothing queues
        held[0].sendall(body[half:])  # one finishes: 63 in flight, a place is free again
        status, answer = read_response(held[0])
        assert status == 200 and len(httpx.Response(200, content=answer).json()["results"]) == 5
        health_status_becomes(url, 200)
        for sock in held[1:]:
            sock.sendall(body[half:])
        statuses = [read_response(sock)[0] for sock in held[1:]]
        assert time.monotonic() - started < 10  # all within the body deadline: none was cut off for slowness
        assert statuses == [200] * 63
    assert ask(url, sorted(images.glob("*.png"))[1].read_bytes()).status_code == 200


def test_idle_and_trickling_connections_do_not_starve_requests(served: tuple[str, int, Path]) -> None:
    url, _, images = served
    reference = sorted(images.glob("*.png"))[0].read_bytes()
    port = int(url.rsplit(":", 1)[1])
    head = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    stop = threading.Event()
    with ExitStack() as stack:
        idle = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(200)]
        trickling = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(20)]

        def trickle() -> None:  # one byte a second on each, until the server cuts them off
            for byte in head:
                for sock in trickling:
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        pass
                if stop.wait(1.0):
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        start, answered = time.monotonic(), 0
        while time.monotonic() - start < HEAD_TIMEOUT - 3 and answered < 40:  # all sockets still open
            health = httpx.get(f"{url}/health", timeout=5)
            recommended = ask(url, reference, timeout=5)
            assert health.status_code == 200 and recommended.status_code == 200, recommended.text
            assert len(recommended.json()["results"]) == 5
            answered += 1
        assert answered >= 5
        head_answer = httpx.head(f"{url}/", timeout=5)
        assert head_answer.status_code == 200 and int(head_answer.headers["content-length"]) > 0

        closed_by = time.monotonic() + HEAD_TIMEOUT + 5  # the server closes what never sent a whole head
        pending = {s.fileno(): s for s in idle + trickling}
        answers = {}
        while pending and time.monotonic() < closed_by:
            ready, _, _ = select.select(list(pending), [], [], 0.5)
            for fd in ready:
                sock = pending[fd]
                try:
                    data = sock.recv(1024)
                except ConnectionResetError:  # closed after its 408 while the trickle thread still sent bytes
                    data = b""
                answers[fd] = answers.get(fd, b"") + data
                if not data:
                    del pending[fd]
        stop.set()
        sender.join(5)
        assert not pending, f"{len(pending)} connections were never closed"
        assert all(answers[s.fileno()] == b"" for s in idle)
        assert all(answers[s.fileno()].startswith(b"HTTP/1.1 408") for s in trickling)
    assert ask(url, reference).status_code == 200


def rss(pid: int, field: str) -> int:
    """VmRSS or VmHWM (peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextmanager
def peak_rss(pid: int) -> Iterator[dict[str, int]]:
    """The process's peak RSS during the block (the kernel's high-water mark, reset at the start)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    figures = {"before": rss(pid, "VmRSS")}
    yield figures
    figures["peak"] = rss(pid, "VmHWM")
    time.sleep(1)
    figures["after"] = rss(pid, "VmRSS")


def picture_36mp(fmt: str) -> bytes:
    """6000x6000 pixels (36 MP, under the 40 MP limit) of gradients and blocks, within 10 MB encoded."""
    side = 6000
    gradient = Image.linear_gradient("L").resize((side, side))
    image = Image.merge("RGB", [gradient, Image.radial_gradient("L").resize((side, side)), gradient.rotate(90)])
    for i in range(0, side, 750):
        image.paste((200, 30, 30) if i % 1500 else (20, 40, 220), (i, i, i + 500, i + 500))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_memory_under_16_concurrent_36_megapixel_uploads(served: tuple[str, int, Path], fmt: str) -> None:
    url, pid, images = served
    upload = picture_36mp(fmt)
    assert len(upload) <= 10 * 2**20
    assert ask(url, sorted(images.glob("*.png"))[0].read_bytes()).status_code == 200  # warm
    idle = rss(pid, "VmRSS")
    with peak_rss(pid) as figures, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: ask(url, upload, f"big.{fmt.lower()}", timeout=300), range(16)))
    assert [r.status_code for r in responses] == [200] * 16, responses[0].text
    above = {name: (value - idle) / 2**20 for name, value in figures.items()}
    print(f"\n{fmt} {len(upload) / 2**20:.1f} MB x16: idle RSS {idle / 2**20:.0f} MB, above it: peak ", end="")
    print(f"{above['peak']:.0f} MB, 1 s after {above['after']:.0f} MB")
    assert figures["peak"] - idle <= MEMORY_GOAL
