"""A catalog database that is unreachable at open is one clear line; one lost while in use makes
requests fail with StoreUnavailable, and the same store object serves again once the database is back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pg_fixtures import embedded_server, fill, open_store
from rec_fixtures import unit

from fashionrec.errors import UserError
from fashionrec.index.postgres.store import PostgresCatalog
from fashionrec.index.store import ChangeSet, StoreOptions, StoreUnavailable


def one_line_error(url: str, name: str | None = None) -> str:
    with pytest.raises(UserError) as caught:
        PostgresCatalog.open(url, StoreOptions(catalog=name))
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_an_unreachable_or_invalid_database_is_one_line_at_open(tmp_path: Path) -> None:
    assert "cannot connect" in one_line_error(f"postgresql://postgres@/postgres?host={tmp_path}")
    assert "cannot connect" in one_line_error("postgresql://someone:secret@127.0.0.1:1/shop")
    assert "secret" not in one_line_error("postgresql://someone:secret@127.0.0.1:1/shop")
    assert "invalid database URL" in one_line_error("postgresql://someone:secret@db.example/shop?nonsense=1")
    assert "secret" not in one_line_error("postgresql://someone:secret@db.example/shop?nonsense=1")


def test_bad_names_and_unbuilt_catalogs_are_one_line(pg_url: str, catalog_name: str) -> None:
    for name in ("Shop", "a-b", "x; DROP TABLE items", "pg_shop", "a" * 64):
        assert "invalid catalog name" in one_line_error(pg_url, name)
    with pytest.raises(UserError, match="--backend, --url and --collection choose the vector index of an index"):
        PostgresCatalog.open(pg_url, StoreOptions(backend="qdrant", catalog=catalog_name), create=True)
    assert "has not been built yet; build it with `fashionrec index`" in one_line_error(pg_url, catalog_name)
    with PostgresCatalog.open(pg_url, StoreOptions(catalog=catalog_name), create=True) as store:
        assert store.state() is None
        for read in (store.items, lambda: store.search(np.ones((1, 4)), 3), store.health):
            with pytest.raises(UserError, match=f"catalog '{catalog_name}'.*`fashionrec index`"):
                read()


@pytest.mark.slow  # starts a second embedded server of its own, then stops and restarts it
def test_a_database_lost_in_use_is_unavailable_then_serves_again_without_reopening(
    tmp_path: Path, pg_url: str, catalog_name: str
) -> None:
    vectors = unit(np.random.default_rng(0).standard_normal((30, 6)))
    with embedded_server(tmp_path) as server:  # beside the session's server, in another data folder
        catalog = open_store(server.url, "faults")
        try:
            fill(catalog, [f"p{i}" for i in range(30)], vectors)
            before = catalog.search(vectors[:3], 5)

            server.stop()
            for request in (lambda: catalog.search(vectors[:3], 5), catalog.refresh, lambda: catalog.item("p1")):
                with pytest.raises(StoreUnavailable, match="is unavailable") as caught:
                    request()
                assert "\n" not in str(caught.value)
            assert "cannot connect" in one_line_error(server.url)
            with open_store(pg_url, catalog_name) as elsewhere:  # the other server is untouched
                elsewhere.drop()

            server.start()
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert catalog.search(vectors[:3], 5) == before
                    break
                except StoreUnavailable:  # the pool reconnects in the background, with backoff
                    assert time.monotonic() < deadline, "no recovery within 30 s"
                    time.sleep(0.2)
            catalog.apply(ChangeSet(removals=["p1"]))  # writes work again too
            assert catalog.count() == 29
        finally:
            catalog.close()
