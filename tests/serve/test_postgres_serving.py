"""Serving a catalog kept in PostgreSQL: replicas without a shared disk, each seeing every change made
through any other at its next request; a database unreachable at start, or lost while serving and back."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pg_fixtures import embedded_server, open_store, require_postgres
from PIL import Image
from rec_fixtures import FakeEncoder, demo_images, solid_images, tiny_checkpoint
from serve_helpers import serve_process

from fashionrec.cli.main import main
from fashionrec.index import Recommender, build_index
from fashionrec.serve.app import create_app

TOKEN = "replica-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, pg_server) -> Iterator[tuple[str, str]]:
    """Two `fashionrec serve` processes on one catalog in the session's database, built from demo images
    that are then deleted: no replica has the images on its disk."""
    root = tmp_path_factory.mktemp("replicas")
    checkpoint = tiny_checkpoint(root / "ckpt")
    images = demo_images(root / "demo")
    name = f"replicas_{os.getpid()}"
    build_index(checkpoint, images, pg_server.url, catalog=name, cache_dir=root / "cache", device="cpu")
    shutil.rmtree(images.parent)
    (root / "token").write_text(TOKEN)
    flags = ["--catalog-name", name, "--admin-token-file", str(root / "token")]
    with ExitStack() as stack:
        servers = [
            stack.enter_context(serve_process(checkpoint, pg_server.url, root / f"serve{i}.log", *flags))
            for i in range(2)
        ]
        yield tuple(url for url, _ in servers)
    with open_store(pg_server.url, name) as store:
        store.drop()


@pytest.mark.slow  # two `fashionrec serve` processes: what only separate processes can show
def test_a_change_through_one_replica_is_answered_by_the_other(replicas: tuple[str, str]) -> None:
    one, two = (httpx.Client(base_url=url, timeout=60) for url in replicas)
    try:
        # Catalog images come from the database: the folder they were indexed from is gone.
        assert two.get("/items/D000001/image").status_code == 200
        picture = png((250, 20, 20))
        fields = {"id": "new/1", "category": "dress|sale", "title": "Red coat", "price": "80.00", "currency": "EUR"}
        added = one.post("/admin/items", data=fields, files={"image": ("c.png", picture, "image/png")}, headers=AUTH)
        assert added.status_code == 201, added.text

        assert two.get("/items/new/1/image").content == picture
        assert two.get("/health").json()["items"] == 49
        found = two.post("/recommend", files={"image": ("q.png", png((240, 30, 30)))}, data={"text": "x", "k": "49"})
        result = next(r for r in found.json()["results"] if r["id"] == "new/1")
        assert (result["title"], result["price"], result["categories"]) == ("Red coat", "80.00", ["dress", "sale"])
        by_reference = two.post("/recommend", data={"item_id": "new/1", "text": "is blue", "category": "sale"})
        assert by_reference.status_code == 200 and by_reference.json()["results"] == []  # only itself in "sale"

        assert two.patch("/admin/items/new/1", data={"price": "75.00"}, headers=AUTH).status_code == 200
        assert one.get("/items", params={"category": "sale"}).json()["items"][0]["price"] == "75.00"
        assert one.delete("/admin/items/new/1", headers=AUTH).status_code == 200
        assert two.get("/items/new/1/image").status_code == 404
        assert two.get("/health").json()["items"] == 48
    finally:
        one.close()
        two.close()


def test_a_database_unreachable_at_start_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    never_loaded = __file__  # the catalog is opened before the checkpoint is read
    argv = ["serve", "--checkpoint", never_loaded, "--index", "postgresql://shop:s3cret@127.0.0.1:1/shop"]
    code = main([*argv, "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: cannot connect to the catalog database 127.0.0.1:1/shop") and "s3cret" not in err


@pytest.mark.slow  # a database of its own, stopped and started again
def test_a_database_lost_while_serving_is_503_then_served_again_without_a_restart(tmp_path: Path, require) -> None:
    require_postgres(require)
    images = solid_images(tmp_path / "images", 8, size=8)
    with embedded_server(tmp_path) as server:
        build_index(Path("unused"), images, server.url, encoder=FakeEncoder())
        store = open_store(server.url, "fashionrec", create=False, timeout=0.5)
        recommender = Recommender(FakeEncoder(), store)
        with TestClient(create_app(recommender, admin_token=TOKEN)) as client:
            query = {"files": {"image": ("q.png", png((200, 10, 10)))}, "data": {"text": "x", "k": "3"}}
            before = client.post("/recommend", **query).json()
            assert client.get("/health").json()["database"].endswith("/postgres")

            server.stop()
            calls = {
                "recommend": lambda: client.post("/recommend", **query),
                "items": lambda: client.get("/items"),
                "image": lambda: client.get("/items/c001/image"),
                "add": lambda: client.post(
                    "/admin/items", data={"id": "lost"}, files={"image": ("l.png", png((1, 2, 3)))}, headers=AUTH
                ),
            }
            for name, call in calls.items():
                response = call()
                assert response.status_code == 503, name
                message = response.json()["error"]
                assert "is unavailable" in message and "\n" not in message
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"

            server.start()
            deadline = time.monotonic() + 30
            while client.get("/health").status_code != 200:  # the pool reconnects by itself
                assert time.monotonic() < deadline, "not served again within 30 s"
                time.sleep(0.2)
            assert client.post("/recommend", **query).json() == before
            assert client.get("/items/lost/image").status_code == 404  # the failed add changed nothing
            assert client.get("/health").json()["items"] == 8
        recommender.close()
