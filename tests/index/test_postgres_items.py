"""Single-item changes to a PostgreSQL catalog (what a shop's admin does): each one transaction, seen by
every store object on the database at its next request; a refused change changes nothing."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from pg_fixtures import fill, model, picture_item
from rec_fixtures import unit

from fashionrec.errors import UserError
from fashionrec.index.items import Product
from fashionrec.index.store import ChangeSet, DuplicateItem, StoreUnavailable, UnknownItem, Upsert

DIM = 8
PRODUCT = {"title": "Red <b>dress</b>", "price": "49.90", "currency": "EUR", "url": "https://shop.example/red"}


@pytest.fixture
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(0).standard_normal((40, DIM)))


@pytest.fixture
def catalog(pg_catalog, vectors: np.ndarray):
    fill(pg_catalog, [f"p{i:02d}" for i in range(len(vectors))], vectors, [("dress",)] * len(vectors))
    pg_catalog.refresh()
    return pg_catalog


def add(store, item_id: str, picture: int, vector: np.ndarray, **product) -> dict:
    item, data = picture_item(item_id, picture, ("dress", "sale"), **{**PRODUCT, **product})
    return store.apply(ChangeSet([Upsert(item, vector, data, must_exist=False)]))


def snapshot(store) -> tuple:
    return store.version(), store.items(), store.count()


def test_add_update_and_remove_an_item_with_its_image(catalog) -> None:
    version = int(catalog.version())
    vector = unit(np.arange(DIM) - 3.5)
    assert add(catalog, "new/red", 1000, vector)["version"] == version + 1
    item = catalog.item("new/red")
    assert (item.categories, item.product.price, item.product.title, item.source) == (
        ("dress", "sale"),
        "49.90",
        "Red <b>dress</b>",
        "upload",
    )
    image = catalog.image(item)
    assert hashlib.sha256(image).hexdigest() == item.sha256 and catalog.ids_with_content(item.sha256) == ["new/red"]
    [[hit]] = catalog.search(vector[None], 1, category="sale")
    assert hit.item == item and hit.score == pytest.approx(1.0, abs=1e-5)

    changed = replace(item, categories=("dress",), product=Product("Blue dress", None, "EUR", item.product.url))
    catalog.apply(ChangeSet([Upsert(changed, must_exist=True)]))  # fields only: the vector stays
    assert catalog.item("new/red") == changed and catalog.search(vector[None], 1)[0][0].item == changed

    other, data = picture_item("new/red", 1001, ("dress",))
    catalog.apply(ChangeSet([Upsert(other, -vector, data, must_exist=True)]))
    assert catalog.image(catalog.item("new/red")) == data
    assert catalog.ids_with_content(item.sha256) == []  # the old picture is gone with its last item
    with pytest.raises(UnknownItem):
        catalog.image(item)
    assert catalog.search(-vector[None], 1)[0][0].item.id == "new/red"

    assert catalog.apply(ChangeSet(removals=["new/red"]))["version"] == version + 4
    with pytest.raises(UnknownItem, match="no catalog item with id 'new/red'"):
        catalog.item("new/red")
    assert "new/red" not in {h.item.id for h in catalog.search(vector[None], 41)[0]}
    assert catalog.ids_with_content(other.sha256) == []


def test_refused_changes_change_nothing(catalog, pg_open) -> None:
    before = snapshot(catalog)
    vector = unit(np.ones(DIM))
    existing, data = picture_item("p01", 2000)
    with pytest.raises(DuplicateItem, match="already has an item with id 'p01'"):
        catalog.apply(ChangeSet([Upsert(existing, vector, data, must_exist=False)]))
    svg, _ = picture_item("x", 2001)
    with pytest.raises(UserError, match="not a JPEG, PNG or WebP"):
        catalog.apply(
            ChangeSet([Upsert(replace(svg, sha256=hashlib.sha256(b"<svg/>").hexdigest()), vector, b"<svg/>")])
        )
    with pytest.raises(ValueError, match="not a finite one of 8"):
        add(catalog, "x", 2002, np.ones(DIM + 1))
    with pytest.raises(ValueError, match="not a finite one of 8"):
        add(catalog, "x", 2002, np.full(DIM, np.nan))
    with pytest.raises(UnknownItem, match="nope"):
        catalog.apply(ChangeSet([Upsert(replace(existing, id="nope"), must_exist=True)]))
    with pytest.raises(UnknownItem, match="nope"):
        catalog.apply(ChangeSet(removals=["p02", "nope"]))  # all or nothing: p02 stays
    # A server holding the catalog of one model, while a rebuild with another commits: its change is refused.
    fill(pg_open(), ["q"], unit(np.ones((1, DIM))), built_with=model(DIM, fingerprint="rebuilt"))
    with pytest.raises(UserError, match="rebuilt with another model meanwhile"):
        add(catalog, "x", 2003, vector)
    with pytest.raises(StoreUnavailable, match="cannot be served by this server"):
        catalog.refresh(lambda found: found.fingerprint == "test-model" or _refuse())
    assert catalog.ids_with_content(hashlib.sha256(data).hexdigest()) == []  # no stray image either
    fill(pg_open(), ["p01"], unit(np.ones((1, DIM))))  # the model is back: served again
    catalog.refresh(lambda found: found.fingerprint == "test-model" or _refuse())
    assert int(catalog.version()) == int(before[0]) + 2


def _refuse() -> None:
    raise UserError("another model")


def test_a_change_through_one_store_is_seen_by_another_at_its_next_request(catalog, pg_open, vectors) -> None:
    """Two store objects, as two servers hold them, on one database."""
    other = pg_open()
    other.refresh()
    assert other.version() == catalog.version()
    vector = unit(np.linspace(-1, 1, DIM))
    add(catalog, "added", 3000, vector)
    other.refresh()
    assert other.version() == catalog.version()
    assert other.search(vector[None], 3, category="sale")[0][0].item.id == "added"
    assert other.image(other.item("added")) == catalog.image(catalog.item("added"))
    other.apply(ChangeSet(removals=["added"]))
    assert "added" not in {h.item.id for h in catalog.search(vector[None], 41)[0]}

    # A rebuild swaps the items table under the other store's pooled connections.
    flipped = -vectors
    fill(catalog, [f"q{i:02d}" for i in range(len(flipped))], flipped, built_with=model(DIM, fingerprint="v2"))
    other.refresh()
    assert other.model().fingerprint == "v2"
    assert other.search(flipped[:1], 1)[0][0].item.id == "q00"


def test_single_item_changes_create_and_drop_the_hnsw_index_at_the_threshold(pg_open) -> None:
    store = pg_open(approx_threshold=20)
    vectors = unit(np.random.default_rng(1).standard_normal((21, DIM)))
    assert fill(store, [f"p{i:02d}" for i in range(20)], vectors[:20])["search"] == "exact"
    assert add(store, "p20", 4000, vectors[20])["search"] == "hnsw"
    assert store.search(vectors[20:], 1)[0][0].item.id == "p20"
    assert store.apply(ChangeSet(removals=["p20"]))["search"] == "exact"
