"""The admin routes: on only with a token, the token checked, every bad input a 4xx that changes nothing,
and a change answered by the very next request; each test for a catalog in a folder and in PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rec_fixtures import SMALL_LIMITS, FakeEncoder, solid_images
from serve_helpers import live_server

from fashionrec.errors import UserError
from fashionrec.index import Recommender, build_index
from fashionrec.index.manifest import MANIFEST
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import StoreOptions
from fashionrec.serve.admin import TOKEN_ENV, read_admin_token
from fashionrec.serve.app import create_app

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class Served(NamedTuple):
    recommender: Recommender
    stored: Callable[[], Any]  # what the store holds, to compare before and after a request


@pytest.fixture(params=["folder", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """A fresh catalog of 12 solid colours per test (the admin tests change it), in an index folder or in
    a PostgreSQL database."""
    images = solid_images(tmp_path / "images", 12, size=8)
    if request.param == "folder":
        location, options = tmp_path / "index", StoreOptions()
    else:
        location, options = (
            request.getfixturevalue("pg_url"),
            StoreOptions(catalog=request.getfixturevalue("catalog_name")),
        )
    build_index(Path("unused"), images, location, encoder=FakeEncoder(), catalog=options.catalog)
    store = open_catalog(location, options)
    if request.param == "folder":
        stored = (location / MANIFEST).read_bytes
    else:
        stored = lambda: (store.refresh() or store.version(), store.items())  # noqa: E731
    recommender = Recommender(FakeEncoder(), store, SMALL_LIMITS)
    yield Served(recommender, stored)
    recommender.close()


@pytest.fixture
def client(catalog: Served) -> Iterator[TestClient]:
    with TestClient(create_app(catalog.recommender, admin_token=TOKEN)) as client:
        yield client


def add(client: TestClient, fields: dict, image: bytes | None = None, headers: dict = AUTH) -> httpx.Response:
    files = {"image": ("new.png", image if image is not None else png((250, 5, 5)), "image/png")}
    return client.post("/admin/items", data=fields, files=files, headers=headers)


PRODUCT = {"category": "dress|sale", "title": "Red <b>dress</b>", "price": "19.90", "currency": "EUR"}
PRODUCT |= {"url": "https://shop.example/p/new", "material": "cotton"}


def test_an_added_item_is_answered_by_the_next_request(client: TestClient) -> None:
    response = add(client, {"id": "new/1", **PRODUCT})
    assert response.status_code == 201
    listed = {
        "id": "new/1",
        "categories": ["dress", "sale"],
        "image_url": "/items/new/1/image",
        "title": "Red <b>dress</b>",
        "price": "19.90",
        "currency": "EUR",
        "url": "https://shop.example/p/new",
        "attributes": {"material": "cotton"},
    }
    assert response.json() == listed
    results = client.post("/recommend", files={"image": ("q.png", png((240, 10, 10)))}, data={"text": "x"}).json()
    assert results["results"][0] == {**listed, "score": results["results"][0]["score"]}
    assert client.get("/items", params={"category": "sale"}).json()["items"] == [listed]
    assert client.get("/items/new/1/image").content == png((250, 5, 5))
    assert client.get("/health").json()["items"] == 13


def test_update_changes_the_fields_given_and_the_picture(client: TestClient) -> None:
    assert add(client, {"id": "new", **PRODUCT}).status_code == 201
    response = client.patch("/admin/items/new", data={"price": "17.50", "title": ""}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["price"], body["title"], body["currency"], body["categories"]) == (
        "17.50",
        None,
        "EUR",
        ["dress", "sale"],
    )
    blue = png((5, 5, 250))
    files = {"image": ("b.png", blue, "image/png")}
    assert client.patch("/admin/items/new", files=files, data={"category": "blue"}, headers=AUTH).status_code == 200
    assert client.get("/items/new/image").content == blue
    query = {"files": {"image": ("q.png", png((10, 10, 240)))}, "data": {"text": "x", "k": "1"}}
    assert client.post("/recommend", **query).json()["results"][0]["id"] == "new"
    assert client.get("/categories").json()["categories"][0] == {"name": "blue", "items": 1}


def test_remove_takes_an_item_out_at_once(client: TestClient) -> None:
    response = client.delete("/admin/items/c003", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"removed": "c003"}
    assert client.get("/items/c003/image").status_code == 404
    ids = [
        r["id"] for r in client.post("/recommend", data={"item_id": "c001", "text": "x", "k": "20"}).json()["results"]
    ]
    assert "c003" not in ids and len(ids) == 10


@pytest.mark.parametrize(
    "method, url, kwargs",
    [
        ("post", "/admin/items", {"data": {"id": "x"}, "files": {"image": ("a.png", b"\x89PNG")}}),
        ("patch", "/admin/items/c001", {"data": {"title": "x"}}),
        ("delete", "/admin/items/c001", {}),
    ],
)
def test_the_token_is_required_and_checked(catalog, client: TestClient, method: str, url: str, kwargs: dict) -> None:
    before = catalog.stored()
    missing = getattr(client, method)(url, **kwargs)
    assert missing.status_code == 401 and "admin token" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer x", f"Basic {TOKEN}"):
        wrong = getattr(client, method)(url, headers={"Authorization": header}, **kwargs)
        assert wrong.status_code == (401 if header.startswith("Basic") else 403), header
    assert catalog.stored() == before
    with TestClient(create_app(catalog.recommender)) as off:  # no token configured: the routes are not there
        response = getattr(off, method)(url, headers=AUTH, **kwargs)
        assert response.status_code == 404 and response.json() == {"error": "Not Found"}
        assert off.get("/health").json()["admin"] is False


TRUNCATED = png((64, 64, 64), size=64)[:-40]


@pytest.mark.parametrize(
    "call, status, message",
    [
        (lambda c: add(c, {"id": "c001"}), 409, "already has an item with id 'c001'"),
        (lambda c: add(c, {"id": "n", "price": "12,50"}), 400, "unparsable price '12,50'"),
        (lambda c: add(c, {"id": "n", "url": "javascript:alert(1)"}), 400, "must be an http:// or https://"),
        (lambda c: add(c, {"id": "n"}, b"not an image"), 400, "not a JPEG, PNG or WebP"),
        (lambda c: add(c, {"id": "n"}, TRUNCATED), 400, "truncated or corrupt"),
        (lambda c: add(c, {"id": "n"}, png((1, 1, 1), size=400)), 413, "the limit is 90000 pixels"),
        (lambda c: add(c, {"title": "no id"}), 400, "give the new item's id"),
        (lambda c: add(c, {"id": "n", "category": "x" * 101}), 400, "a category must be 1 to 100"),
        (lambda c: c.post("/admin/items", data={"id": "n"}, headers=AUTH), 400, "'image'"),
        (
            lambda c: c.patch("/admin/items/nope", data={"title": "x"}, headers=AUTH),
            404,
            "no catalog item with id 'nope'",
        ),
        (lambda c: c.patch("/admin/items/c001", data={"price": "cheap"}, headers=AUTH), 400, "unparsable price"),
        (lambda c: c.patch("/admin/items/c001", data={"url": "ftp://x/y"}, headers=AUTH), 400, "http:// or https://"),
        (lambda c: c.patch("/admin/items/c001", data={"id": "other"}, headers=AUTH), 400, "id cannot change"),
        (
            lambda c: c.patch("/admin/items/c001", files={"image": ("x.png", b"junk")}, headers=AUTH),
            400,
            "not a JPEG, PNG or WebP",
        ),
        (lambda c: c.delete("/admin/items/nope", headers=AUTH), 404, "no catalog item with id 'nope'"),
    ],
)
def test_bad_admin_requests_are_4xx_and_change_nothing(catalog, client: TestClient, call, status: int, message: str):
    before = catalog.stored()
    response = call(client)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert catalog.stored() == before
    assert client.get("/health").json()["items"] == 12


def test_the_openapi_document_describes_the_admin_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"post"} <= set(spec["paths"]["/admin/items"]) and {"patch", "delete"} <= set(
        spec["paths"]["/admin/items/{item_id}"]
    )
    assert spec["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token",
    }
    form = spec["paths"]["/admin/items"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["image", "id"] and {"title", "price", "currency", "url"} <= set(form["properties"])
    result = spec["components"]["schemas"]["Result"]["properties"]
    assert {"title", "price", "currency", "url", "attributes", "score"} <= set(result)


def test_the_token_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_admin_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert read_admin_token(None) == TOKEN
    (tmp_path / "token").write_text("  from-a-file-0123456789\n")
    assert read_admin_token(tmp_path / "token") == "from-a-file-0123456789"
    (tmp_path / "short").write_text("short\n")
    with pytest.raises(UserError, match="at least 16 characters"):
        read_admin_token(tmp_path / "short")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        read_admin_token(tmp_path / "empty")


def test_an_item_added_to_a_running_server_is_found_by_the_next_search(catalog: Served) -> None:
    """Through a real uvicorn, as a shop's back office would call it."""
    with (
        live_server(create_app(catalog.recommender, admin_token=TOKEN)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        query = {"files": {"image": ("q.png", png((10, 240, 10)))}, "data": {"text": "is green", "k": "3"}}
        assert "green" not in [r["id"] for r in http.post("/recommend", **query).json()["results"]]
        files = {"image": ("g.png", png((5, 250, 5)), "image/png")}
        fields = {"id": "green", "title": "Green coat", "price": "80", "currency": "EUR"}
        assert http.post("/admin/items", data=fields, files=files, headers=AUTH).status_code == 201
        first = http.post("/recommend", **query).json()["results"][0]
        assert (first["id"], first["title"], first["price"]) == ("green", "Green coat", "80")
