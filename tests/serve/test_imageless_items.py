"""The API over a catalog imported without images: such items are results of uploaded photos, shown without a
picture (`image_url` null), with a clear 404 on their image route and a clear 400 as a reference."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashionrec.index import Recommender
from fashionrec.serve.app import create_app


@pytest.fixture(scope="module")
def client(imported_service: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(imported_service)) as client:
        yield client


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_items_without_a_picture_have_no_image_url_and_their_image_route_is_404(client: TestClient) -> None:
    items = {item["id"]: item for item in client.get("/items", params={"limit": 100}).json()["items"]}
    assert len(items) == 13 and items["added"]["image_url"] == "/items/added/image"
    assert all(item["image_url"] is None for item_id, item in items.items() if item_id != "added")
    response = client.get("/items/c004/image")
    assert response.status_code == 404
    assert response.json()["error"].startswith("item 'c004' has no image in this catalog (its vector was imported")
    assert client.get("/items/added/image").headers["content-type"] == "image/png"


def test_uploads_find_them_and_they_cannot_be_references(client: TestClient, imported_service: Recommender) -> None:
    response = client.post("/recommend", files={"image": ("q.png", png((90, 200, 40)))}, data={"text": "x", "k": "13"})
    results = response.json()["results"]
    assert response.status_code == 200 and len(results) == 13
    expected = imported_service.recommend(png((90, 200, 40)), "x", 13)
    assert [r["id"] for r in results] == [m.id for m in expected]
    assert {r["id"]: r["image_url"] for r in results if r["image_url"] is not None} == {"added": "/items/added/image"}
    response = client.post("/recommend", data={"item_id": "c004", "text": "x"})
    assert response.status_code == 400
    assert "it cannot be a reference: upload a photo instead" in response.json()["error"]
    response = client.post("/recommend", data={"item_id": "added", "text": "x", "k": "3"})
    assert response.status_code == 200 and "added" not in {r["id"] for r in response.json()["results"]}


def test_the_api_document_says_image_url_may_be_null(client: TestClient) -> None:
    field = client.get("/openapi.json").json()["components"]["schemas"]["CatalogItem"]["properties"]["image_url"]
    assert {"type": "null"} in field["anyOf"] and "imported without one" in field["description"]
