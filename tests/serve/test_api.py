"""HTTP contract: good queries answer JSON results, every client mistake a 4xx JSON error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from rec_fixtures import SMALL_LIMITS, FakeEncoder

from fashionrec.index import Recommender, build_index
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import StoreUnavailable
from fashionrec.serve.app import FORM_OVERHEAD, create_app


@pytest.fixture(scope="module")
def client(fake_recommender: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(fake_recommender)) as client:
        yield client


def png(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def noisy_png(side: int) -> bytes:
    """A PNG that does not compress: for crossing byte limits with few pixels."""
    buffer = io.BytesIO()
    Image.effect_noise((side, side), 100).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def post(client: TestClient, image: bytes | None = None, text: str | None = "is red", k: str | None = "5", **fields):
    files = {"image": ("query.png", image, "image/png")} if image is not None else None
    data = {name: value for name, value in (("text", text), ("k", k), *fields.items()) if value is not None}
    return client.post("/recommend", files=files, data=data)


def test_health_reports_the_catalog(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["items"] == 12 and body["max_k"] == 100 and body["max_page"] == 100
    assert body["threads"] == torch.get_num_threads()


def test_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<form id="query"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_recommend_returns_k_ranked_results_with_fetchable_images(
    client: TestClient, fake_recommender: Recommender
) -> None:
    response = post(client, png(colour=(250, 10, 10)), k="5")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 5
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    image = client.get(results[0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == fake_recommender.image(results[0]["id"])[0]


def test_a_catalog_image_is_not_recommended_to_itself(client: TestClient, fake_recommender: Recommender) -> None:
    data = fake_recommender.image("c003")[0]
    ids = [r["id"] for r in post(client, data, k="12").json()["results"]]
    assert "c003" not in ids and len(ids) == 11


TRUNCATED = png((64, 64))[:-40]


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"image": b"not an image at all"}, 400, "not a JPEG, PNG or WebP"),
        ({"image": TRUNCATED}, 400, "truncated or corrupt"),
        ({"image": b""}, 400, "empty"),
        ({"image": png((400, 400))}, 413, "400x400 pixels; the limit is 90000"),
        ({"text": ""}, 400, "feedback text is empty"),
        ({"text": "   "}, 400, "feedback text is empty"),
        ({"text": "x" * 501}, 400, "501 characters; the limit is 500"),
        ({"k": "0"}, 400, "k must be an integer from 1 to 100"),
        ({"k": "101"}, 400, "k must be an integer from 1 to 100"),
        ({"k": "-3"}, 400, "k must be an integer from 1 to 100"),
        ({"k": "ten"}, 400, "k must be an integer, got 'ten'"),
        ({"k": "9" * 5000}, 400, "k must be an integer"),
    ],
)
def test_bad_queries_are_4xx_json_with_a_clear_message(client: TestClient, kwargs, status: int, message: str) -> None:
    args = {"image": png(), **kwargs}
    response = post(client, **args)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_missing_image_or_wrong_field_types(client: TestClient) -> None:
    response = post(client, image=None)
    assert response.status_code == 400 and "multipart field 'image'" in response.json()["error"]
    response = client.post("/recommend", data={"image": "abc", "text": "x"})
    assert response.status_code == 400 and "multipart field 'image'" in response.json()["error"]
    response = client.post("/recommend", files={"image": ("a.png", png()), "text": ("t.txt", b"is red")})
    assert response.status_code == 400
    assert (
        response.json()["error"] == "'text' was sent as a file; send it as a plain form field (only 'image' is a file)"
    )
    response = client.post("/recommend", json={"text": "is red"})
    assert response.status_code == 400


def test_image_over_the_byte_limit_is_413(client: TestClient) -> None:
    data = noisy_png(150)  # 22,500 pixels, within the pixel limit
    assert SMALL_LIMITS.max_bytes < len(data) < SMALL_LIMITS.max_bytes + FORM_OVERHEAD
    response = post(client, data)
    assert response.status_code == 413
    assert f"the limit is {SMALL_LIMITS.max_bytes}" in response.json()["error"]


def test_oversized_bodies_are_cut_off_with_or_without_content_length(client: TestClient) -> None:
    big = b"\0" * (SMALL_LIMITS.max_bytes + FORM_OVERHEAD + 1)
    response = post(client, big)
    assert response.status_code == 413 and "request is larger than" in response.json()["error"]

    head = b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'

    def chunks() -> Iterator[bytes]:  # a generator body goes out chunked, with no Content-Length
        yield head
        for _ in range(10):
            yield big[: len(big) // 5]
        yield b"\r\n--B--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=B"}
    response = client.post("/recommend", content=chunks(), headers=headers)
    assert "transfer-encoding" in response.request.headers
    assert response.status_code == 413 and "request is larger than" in response.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/items/nope/image",
        "/items/../manifest/image",
        "/items/..%2F..%2Fetc%2Fpasswd/image",
        "/items/%2Fetc%2Fpasswd/image",
        "/items/c001.png/image",
    ],
)
def test_only_catalog_ids_reach_the_file_system(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "error" in response.json()


def test_an_item_whose_file_vanished_is_404(client: TestClient, fake_recommender: Recommender, tmp_path: Path) -> None:
    catalog = fake_recommender.catalog
    path = catalog.image_path(catalog.item("c011"))
    moved = path.rename(tmp_path / path.name)
    try:
        response = client.get("/items/c011/image")
        assert response.status_code == 404 and "no longer on disk" in response.json()["error"]
    finally:
        moved.rename(path)


def test_the_server_keeps_serving_after_bad_requests(client: TestClient) -> None:
    for _ in range(3):
        post(client, b"garbage")
        post(client, TRUNCATED)
        client.get("/items/../../image")
    assert post(client, png()).status_code == 200
    assert client.get("/health").json()["status"] == "ok"


def test_unexpected_errors_are_500_json_and_not_leaked(fake_recommender: Recommender) -> None:
    class Broken:
        limits = SMALL_LIMITS

        def recommend(self, image: bytes | None, text: str, k: int, item_id=None, category=None):
            raise RuntimeError("secret internal detail")

        image = fake_recommender.image
        health = fake_recommender.health
        categories = fake_recommender.categories
        items = fake_recommender.items

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as client:
        response = post(client, png())
    assert response.status_code == 500 and response.json() == {"error": "internal server error"}


def test_ids_with_folders_and_odd_characters_round_trip(tmp_path: Path) -> None:
    names = ["sub dir/a #1.png", "é/b?x.png", "100%.png"]
    for name in names:
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(png(colour=(len(name) * 20, 0, 0)))
    encoder = FakeEncoder()
    build_index(Path("unused"), tmp_path / "images", tmp_path / "index", encoder=encoder)
    recommender = Recommender(encoder, open_catalog(tmp_path / "index"), SMALL_LIMITS)
    try:
        with TestClient(create_app(recommender)) as client:
            results = post(client, png(colour=(1, 2, 3)), k="3").json()["results"]
            assert {r["id"] for r in results} == {"sub dir/a #1", "é/b?x", "100%"}
            for r in results:
                assert client.get(r["image_url"]).content == recommender.image(r["id"])[0]
    finally:
        recommender.close()


def test_categories_are_listed_with_their_sizes(client: TestClient) -> None:
    assert client.get("/categories").json() == {
        "categories": [{"name": "even", "items": 6}, {"name": "featured", "items": 1}, {"name": "odd", "items": 6}]
    }


def listed(item_id: str, categories: list[str]) -> dict:
    """An item without product details, as /items lists it."""
    details = {"title": None, "price": None, "currency": None, "url": None, "attributes": {}}
    return {"id": item_id, "categories": categories, "image_url": f"/items/{item_id}/image", **details}


def test_items_are_paged_in_id_order_with_fetchable_images(client: TestClient, fake_recommender: Recommender) -> None:
    body = client.get("/items", params={"offset": 2, "limit": 3}).json()
    assert body["total"] == 12 and (body["offset"], body["limit"]) == (2, 3)
    assert [i["id"] for i in body["items"]] == ["c002", "c003", "c004"]
    assert body["items"][0] == listed("c002", ["even"])
    image = client.get(body["items"][1]["image_url"])
    assert image.content == fake_recommender.image("c003")[0]
    assert [i["id"] for i in client.get("/items").json()["items"]] == [f"c{i:03d}" for i in range(12)]
    assert client.get("/items", params={"offset": 12}).json()["items"] == []
    assert client.get("/items", params={"offset": "9" * 400}).json()["items"] == []


def test_items_of_one_category(client: TestClient) -> None:
    body = client.get("/items", params={"category": "odd", "offset": 4, "limit": 100}).json()
    assert body["total"] == 6 and [i["id"] for i in body["items"]] == ["c009", "c011"]
    featured = client.get("/items", params={"category": "featured"}).json()["items"]
    assert featured == [listed("c000", ["even", "featured"])]
    assert client.get("/items", params={"category": ""}).json()["total"] == 12  # the page's "all categories"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"limit": 101}, "limit: Input should be less than or equal to 100"),
        ({"limit": "ten"}, "limit: Input should be a valid integer"),
        ({"offset": -1}, "offset: Input should be greater than or equal to 0"),
        ({"offset": "9" * 5000}, "offset: Unable to parse input string as an integer"),
        ({"category": "coats"}, "unknown category 'coats'; this catalog has: even, featured, odd"),
        ({"category": "x" * 101}, "category: String should have at most 100 characters"),
    ],
)
def test_bad_item_pages_are_400_with_a_clear_message(client: TestClient, params: dict, message: str) -> None:
    response = client.get("/items", params=params)
    assert response.status_code == 400 and message in response.json()["error"]


def test_limit_bounds_are_inclusive(client: TestClient) -> None:
    assert len(client.get("/items", params={"limit": 1}).json()["items"]) == 1
    assert len(client.get("/items", params={"limit": 100}).json()["items"]) == 12


def test_a_catalog_item_as_reference(client: TestClient, fake_recommender: Recommender) -> None:
    response = post(client, item_id="c003", k="11")
    assert response.status_code == 200
    results = response.json()["results"]
    expected = fake_recommender.recommend(fake_recommender.image("c003")[0], "is red", 11)
    assert [r["id"] for r in results] == [m.id for m in expected] and "c003" not in [r["id"] for r in results]
    assert results[0]["categories"] == list(fake_recommender.catalog.item(results[0]["id"]).categories)


def test_results_restricted_to_a_category(client: TestClient) -> None:
    for fields in ({"item_id": "c003"}, {"image": png(colour=(5, 200, 5))}):
        results = post(client, k="20", category="even", **fields).json()["results"]
        assert sorted(r["id"] for r in results) == [f"c{i:03d}" for i in range(0, 12, 2)]
        assert all("even" in r["categories"] for r in results)
    results = post(client, item_id="c000", k="20", category="even").json()["results"]
    assert len(results) == 5 and "c000" not in [r["id"] for r in results]  # the reference never comes back
    assert post(client, item_id="c000", k="20", category="featured").json()["results"] == []


@pytest.mark.parametrize(
    "fields, status, message",
    [
        ({"item_id": "nope"}, 404, "no catalog item with id 'nope'"),
        ({"item_id": "../c001"}, 404, "no catalog item"),
        ({"item_id": "c001.png"}, 404, "no catalog item"),
        ({"item_id": ""}, 404, "no catalog item with id ''"),
        ({"item_id": "c001", "image": png()}, 400, "not both"),
        ({"item_id": "c001", "category": "coats"}, 400, "unknown category 'coats'; this catalog has: even"),
        ({"image": png(), "category": "coats"}, 400, "unknown category 'coats'"),
        ({"item_id": "c001", "text": " "}, 400, "feedback text is empty"),
        ({"item_id": "c001", "k": "0"}, 400, "k must be an integer from 1 to 100"),
    ],
)
def test_bad_item_or_category_requests(client: TestClient, fields: dict, status: int, message: str) -> None:
    response = post(client, **fields)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_item_id_as_a_file_or_too_many_fields_is_400(client: TestClient) -> None:
    response = client.post("/recommend", files={"item_id": ("c001", b"c001")}, data={"text": "is red"})
    assert response.status_code == 400 and "'item_id'" in response.json()["error"]
    data = {"item_id": "c001", "text": "x", "k": "3", "category": "even", "extra": "1"}
    response = client.post("/recommend", data=data, files={"image": ("a.png", png())})
    assert response.status_code == 400 and "Maximum number of fields" in response.json()["error"]


def test_openapi_document_and_docs_page(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/items", "/categories", "/health"} <= set(spec["paths"])
    form = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"image", "item_id", "text", "k", "category"}
    limit = next(p for p in spec["paths"]["/items"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text
    assert "default-src 'self'" in docs.headers["content-security-policy"]


class StoreDown:
    """The real service in front of a store that cannot be reached while `down` is set: what every route
    sees of a lost database (the Qdrant and PostgreSQL tests lose real servers)."""

    def __init__(self, service: Recommender) -> None:
        self.service, self.limits, self.down = service, service.limits, True

    def __getattr__(self, name: str):
        method = getattr(self.service, name)

        def call(*args, **kwargs):
            if self.down:
                raise StoreUnavailable("the catalog database at db.example cannot be reached (Connection refused)")
            return method(*args, **kwargs)

        return call


def test_a_store_that_cannot_be_reached_is_503_in_one_line_until_it_is_back(fake_recommender: Recommender) -> None:
    service = StoreDown(fake_recommender)
    with TestClient(create_app(service)) as client:
        calls = [
            lambda: post(client, png()),
            lambda: post(client, item_id="c001"),
            lambda: client.get("/items"),
            lambda: client.get("/categories"),
            lambda: client.get("/items/c001/image"),
        ]
        for call in calls:
            response = call()
            assert response.status_code == 503
            assert response.json() == {
                "error": "the catalog database at db.example cannot be reached (Connection refused)"
            }
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        service.down = False  # the store is back: no restart
        assert [call().status_code for call in calls] == [200] * len(calls)
        assert client.get("/health").json()["status"] == "ok"
