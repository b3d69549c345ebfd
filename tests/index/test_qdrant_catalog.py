"""A Qdrant catalog under a running server, its API key, and a server that cannot be reached. No Qdrant
server runs here: qdrant-client's local mode shows what it can; the API key and unreachable servers are
checked against real sockets (a closed port; a small HTTP server that records what the client sends)."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images

from fashionrec.cli.main import main
from fashionrec.index import Recommender, build_index
from fashionrec.index.items import Item, Product
from fashionrec.index.manifest import MANIFEST, load_manifest
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import StoreOptions, StoreUnavailable, UnknownItem


@pytest.fixture
def qdrant_catalog(tmp_path: Path, quick_folder: Path) -> tuple[Path, Path]:
    """(images, index) of six colours in a Qdrant collection kept by qdrant-client's local mode."""
    images = solid_images(tmp_path / "images", 6, size=8)
    build_index(
        Path("unused"),
        images,
        tmp_path / "index",
        encoder=FakeEncoder(),
        backend="qdrant",
        url=str(quick_folder),
        collection="catalog",
        qdrant_api_key="never-written-anywhere",
    )
    return images, tmp_path / "index"


def test_ids_added_to_the_collection_after_a_server_loaded_it_are_answered(qdrant_catalog) -> None:
    """`fashionrec index` updates a collection in place before it writes its manifest: a server searching
    meanwhile gets ids its manifest does not list. Their records come from the points themselves."""
    images, index = qdrant_catalog
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    try:
        Image.new("RGB", (8, 8), (255, 0, 0)).save(images / "red.png")
        data = (images / "red.png").read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        red = Item("red", "red.png", len(data), 0, sha, ("sale",), Product("Red", "9.99", "EUR"))
        manifest = load_manifest(index)
        vectors = np.load(index / manifest.embeddings)
        # What another process's build writes to the collection (local mode allows one client: this one's).
        backend = recommender.catalog._backend
        vectors = np.concatenate([vectors, FakeEncoder().encode_images([Image.open(images / "red.png")])])
        backend.sync([*manifest.items, red], vectors, changed=["red"], removed=[], reset=False)

        matches = recommender.recommend((images / "c001.png").read_bytes(), "is red", 7)
        assert "red" in [m.id for m in matches] and recommender.catalog.count() == 6  # the manifest is as it was
        found = next(m for m in matches if m.id == "red")
        assert (found.product.title, found.categories) == ("Red", ("sale",))
        assert [m.id for m in recommender.recommend(None, "is red", 3, item_id="red")] != []
        assert recommender.image("red") == (data, "image/png")
        # A record written by someone else never makes the server read a file outside the catalog.
        stray = replace(red, id="stray", path="../../../etc/passwd")
        backend.sync([*manifest.items, red, stray], np.concatenate([vectors, vectors[-1:]]), ["stray"], [], False)
        with pytest.raises(UnknownItem, match="not under the catalog's images"):
            recommender.image("stray")
    finally:
        recommender.close()
    assert "never-written-anywhere" not in "".join(p.read_text(errors="replace") for p in index.glob("*.json"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pointed_at(index: Path, url: str) -> Path:
    """The catalog's manifest naming another Qdrant server (as a manifest built against one does)."""
    manifest = load_manifest(index)
    replace(manifest, backend={**manifest.backend, "url": url}).save(index)
    return index


def test_an_unreachable_server_is_one_line_at_start(
    qdrant_catalog, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, index = qdrant_catalog
    url = f"http://127.0.0.1:{closed_port()}"
    # Before the model loads: the checkpoint named here is no checkpoint at all.
    (tmp_path / "none.pt").write_bytes(b"not a checkpoint")
    build = ["index", "--checkpoint", str(tmp_path / "none.pt"), "--images", str(images), "--out", str(tmp_path / "q")]
    assert main([*build, "--backend", "qdrant", "--url", url, "--collection", "c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the Qdrant server at {url} cannot be reached") and err.count("\n") == 1
    query = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(pointed_at(index, url)), "--item", "c001"]
    assert main([*query, "--text", "is red", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the Qdrant server at {url} cannot be reached") and err.count("\n") == 1


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with `status` and remembers the headers it came with."""

    status = 503
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        body = json.dumps({"status": {"error": "recorded"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, message", [(401, "refused the API key"), (503, "answered 503 Service Unavailable")])
def test_the_api_key_is_sent_from_its_file_or_the_environment(
    qdrant_catalog, recorder, status: int, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    _, index = qdrant_catalog
    url, handler = recorder
    handler.status = status
    pointed_at(index, url)
    monkeypatch.setenv("QDRANT_API_KEY", "key-from-the-environment")
    (tmp_path / "key").write_text("key-from-a-file\n")
    (tmp_path / "unused.pt").write_bytes(b"not a checkpoint")  # never loaded: the store answers first
    query = ["recommend", "--checkpoint", str(tmp_path / "unused.pt"), "--index", str(index), "--item", "c001"]
    query += ["--text", "is red"]
    assert main(query) == 2
    assert main([*query, "--qdrant-api-key-file", str(tmp_path / "key")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all(e.startswith(f"error: the Qdrant server at {url} {message}") for e in errors)
    assert [h.get("api-key") for h in handler.seen] == ["key-from-the-environment", "key-from-a-file"]
    assert "key-from" not in (index / MANIFEST).read_text()


def test_store_options_carry_the_key_to_the_client_only(qdrant_catalog, recorder) -> None:
    _, index = qdrant_catalog
    url, handler = recorder
    pointed_at(index, url)
    with pytest.raises(StoreUnavailable):
        open_catalog(index, StoreOptions(qdrant_api_key="k-0123"))
    assert handler.seen[-1]["api-key"] == "k-0123"
