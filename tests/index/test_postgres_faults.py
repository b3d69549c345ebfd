"""A catalog database that is unreachable at open is one clear line; one lost while in use makes
requests fail with StoreUnavailable, and the same store object serves again once the database is back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pg_fixtures import embedded_server, fill
from rec_fixtures import unit

from fashionrec.errors import UserError
from fashionrec.index.postgres import PostgresCatalog, StoreUnavailable


def one_line_error(url: str, name: str = "fashionrec") -> str:
    with pytest.raises(UserError) as caught:
        PostgresCatalog.open(url, name)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_an_unreachable_or_invalid_database_is_one_line_at_open(tmp_path: Path) -> None:
    assert "cannot connect" in one_line_error(f"postgresql://postgres@/postgres?host={tmp_path}")
    assert "cannot connect" in one_line_error("postgresql://someone:secret@127.0.0.1:1/shop")
    assert "secret" not in one_line_error("postgresql://someone:secret@127.0.0.1:1/shop")
    assert "invalid database URL" in one_line_error("shop-database")


def test_bad_names_and_unbuilt_catalogs_are_one_line(pg_url: str, catalog_name: str) -> None:
    for name in ("Shop", "a-b", "x; DROP TABLE items", "pg_shop", "", "a" * 64):
        assert "invalid catalog name" in one_line_error(pg_url, name)
    with PostgresCatalog.open(pg_url, catalog_name) as catalog:
        for read in (catalog.info, catalog.items, lambda: catalog.search(np.ones((1, 4)), 3)):
            with pytest.raises(UserError, match=f"catalog '{catalog_name}'.*`fashionrec index`"):
                read()


@pytest.mark.slow  # starts a second embedded server of its own, then stops and restarts it
def test_a_database_lost_in_use_is_unavailable_then_serves_again_without_reopening(
    tmp_path: Path, pg_url: str, catalog_name: str
) -> None:
    vectors = unit(np.random.default_rng(0).standard_normal((30, 6)))
    with embedded_server(tmp_path) as server:  # beside the session's server, in another data folder
        catalog = PostgresCatalog.open(server.url, "faults", timeout=1.0)
        try:
            fill(catalog, [f"p{i}" for i in range(30)], vectors)
            before = catalog.search(vectors[:3], 5)

            server.stop()
            for request in (lambda: catalog.search(vectors[:3], 5), catalog.version, lambda: catalog.item("p1")):
                with pytest.raises(StoreUnavailable, match="is unavailable") as caught:
                    request()
                assert "\n" not in str(caught.value)
            assert "cannot connect" in one_line_error(server.url)
            with PostgresCatalog.open(pg_url, catalog_name) as elsewhere:  # the other server is untouched
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
            catalog.remove("p1")  # writes work again too
            assert catalog.info().items == 29
        finally:
            catalog.close()
