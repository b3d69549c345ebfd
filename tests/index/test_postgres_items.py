"""Single-item changes to a PostgreSQL catalog (what a shop's admin does): each one transaction, seen by
every store object on the database at its next request; a refused change changes nothing."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import numpy as np
import pytest
from pg_fixtures import fill, png_bytes, stamp
from rec_fixtures import unit

from fashionrec.errors import UserError
from fashionrec.index.postgres import ItemExists, ItemRecord, NoSuchItem, PostgresCatalog

DIM = 8


@pytest.fixture
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(0).standard_normal((40, DIM)))


@pytest.fixture
def catalog(pg_catalog, vectors: np.ndarray):
    fill(pg_catalog, [f"p{i:02d}" for i in range(len(vectors))], vectors, [("dress",)] * len(vectors))
    return pg_catalog


def product(item_id: str, image: bytes, **fields) -> ItemRecord:
    defaults = {
        "title": "Red <b>dress</b>",
        "price": Decimal("49.90"),
        "currency": "EUR",
        "url": "https://shop.example/red-dress",
        "attributes": {"colour": "red", "sizes": ["S", "M"]},
    }
    return ItemRecord(item_id, ("dress", "sale"), hashlib.sha256(image).hexdigest(), **{**defaults, **fields})


def test_add_update_and_remove_an_item_with_its_image(catalog) -> None:
    version = catalog.version()
    image, vector = png_bytes(1000), unit(np.arange(DIM) - 3.5)
    record = product("new/red", image)
    assert catalog.add(record, image, vector, stamp()) == version + 1
    assert catalog.item("new/red") == record
    stored = catalog.image("new/red")
    assert (stored.data, stored.media_type, stored.sha256) == (image, "image/png", record.sha256)
    assert catalog.search(vector[None], 1, category="sale") == [[("new/red", pytest.approx(1.0, abs=1e-5))]]
    assert catalog.ids_with_content(record.sha256) == ["new/red"]

    assert catalog.update("new/red", {"title": "Blue dress", "price": None, "categories": ["dress"]}) == version + 2
    changed = catalog.item("new/red")
    assert (changed.title, changed.price, changed.categories, changed.url) == (
        "Blue dress",
        None,
        ("dress",),
        record.url,
    )

    other_image, other_vector = png_bytes(1001), -vector
    catalog.update("new/red", image=other_image, vector=other_vector, model=stamp())
    assert catalog.image("new/red").data == other_image
    assert catalog.ids_with_content(record.sha256) == []  # the old picture is gone with its last item
    assert catalog.search(other_vector[None], 1)[0][0][0] == "new/red"

    assert catalog.remove("new/red") == version + 4
    with pytest.raises(NoSuchItem):
        catalog.item("new/red")
    with pytest.raises(NoSuchItem):
        catalog.image("new/red")
    assert "new/red" not in {i for i, _ in catalog.search(other_vector[None], 41)[0]}
    assert catalog.ids_with_content(hashlib.sha256(other_image).hexdigest()) == []


def test_refused_changes_change_nothing(catalog) -> None:
    before = (catalog.version(), catalog.items())
    image, vector = png_bytes(2000), unit(np.ones(DIM))
    existing = catalog.item("p01")
    with pytest.raises(ItemExists, match="p01"):
        catalog.add(product("p01", image), image, vector, stamp())
    with pytest.raises(UserError, match="not a JPEG, PNG or WebP"):
        catalog.add(product("x", b"<svg/>"), b"<svg/>", vector, stamp())
    with pytest.raises(UserError, match="another checkpoint"):
        catalog.add(product("x", image), image, vector, stamp(fingerprint="another"))
    with pytest.raises(ValueError, match="dimensions"):
        catalog.add(product("x", image), image, np.ones(DIM + 1), stamp())
    with pytest.raises(NoSuchItem, match="nope"):
        catalog.update("nope", {"title": "t"})
    with pytest.raises(NoSuchItem, match="nope"):
        catalog.update("nope", image=image, vector=vector, model=stamp())
    with pytest.raises(UserError, match="nothing to change"):
        catalog.update("p01", {})
    with pytest.raises(UserError, match="at least one category"):
        catalog.update("p01", {"categories": []})
    with pytest.raises(UserError, match="another checkpoint"):
        catalog.update("p01", image=image, vector=vector, model=stamp(preprocess={"key": "other", "config": {}}))
    with pytest.raises(NoSuchItem, match="nope"):
        catalog.remove("nope")
    assert (catalog.version(), catalog.items()) == before
    assert catalog.item("p01") == existing
    assert catalog.ids_with_content(hashlib.sha256(image).hexdigest()) == []  # no stray image either


def test_a_change_through_one_store_is_seen_by_another_at_its_next_request(catalog, pg_url, vectors) -> None:
    """Two store objects, as two servers hold them, on one database."""
    with PostgresCatalog.open(pg_url, catalog.tables.schema) as other:
        assert other.version() == catalog.version()
        image, vector = png_bytes(3000), unit(np.linspace(-1, 1, DIM))
        catalog.add(product("added", image), image, vector, stamp())
        assert other.version() == catalog.version()
        assert other.search(vector[None], 3, category="sale")[0][0][0] == "added"
        assert other.image("added").data == image
        other.remove("added")
        assert "added" not in {i for i, _ in catalog.search(vector[None], 41)[0]}

        # A rebuild swaps the items table under the other store's pooled connections.
        flipped = -vectors
        fill(catalog, [f"q{i:02d}" for i in range(len(flipped))], flipped, model=stamp(fingerprint="v2"), rebuild=True)
        assert other.info().fingerprint == "v2"
        assert other.search(flipped[:1], 1)[0][0][0] == "q00"


def test_single_item_changes_create_and_drop_the_hnsw_index_at_the_threshold(pg_catalog) -> None:
    vectors = unit(np.random.default_rng(1).standard_normal((21, DIM)))
    fill(pg_catalog, [f"p{i:02d}" for i in range(20)], vectors[:20], approx_threshold=20)
    assert pg_catalog.info().index == "exact"
    image = png_bytes(4000)
    pg_catalog.add(product("p20", image), image, vectors[20], stamp())
    assert pg_catalog.info().index == "hnsw"
    assert pg_catalog.search(vectors[20:], 1)[0][0][0] == "p20"
    pg_catalog.remove("p20")
    assert pg_catalog.info().index == "exact"
