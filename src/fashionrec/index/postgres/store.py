"""A catalog in a PostgreSQL database with pgvector, as a `CatalogStore`: everything a folder index holds
(model fingerprint, the full preprocessing settings, items and their categories), plus product fields,
image bytes and vectors, shared by every server that opens it.

Reads go to the database each time, through a pool that reconnects by itself: any server sees a change
committed by any other at its next request. `refresh` is one primary-key read of the catalog's version."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from fashionrec.errors import UserError
from fashionrec.index.items import Item
from fashionrec.index.postgres import schema
from fashionrec.index.postgres.build import BuildSession
from fashionrec.index.postgres.changes import apply_changes
from fashionrec.index.postgres.connection import check_server, connect, describe, open_pool
from fashionrec.index.postgres.errors import first_line, reachable
from fashionrec.index.postgres.names import DEFAULT_CATALOG, check_name
from fashionrec.index.postgres.records import COLUMNS, item_from_row, model_key
from fashionrec.index.postgres.search import search
from fashionrec.index.postgres.writes import Meta, not_built, read_meta
from fashionrec.index.registry import redact
from fashionrec.index.store import (
    CatalogDamaged,
    CatalogState,
    ChangeSet,
    Hit,
    ModelInfo,
    StoreOptions,
    StoreUnavailable,
    UnknownItem,
    no_image,
    unknown_item,
)

POOL_SIZE = 8
POOL_TIMEOUT_S = 5.0  # how long a request waits for a connection; while the database is down, its 503 comes after this
log = logging.getLogger(__name__)


class PostgresCatalog:
    """One catalog (a schema named `options.catalog`, default "fashionrec") in the database at a URL. Safe to
    share between threads: each call borrows a pooled connection. A build's writes (`staged`, `stage`,
    `apply` with a model) go through a connection of their own that holds the catalog's build lock."""

    kind = "postgres"

    def __init__(self, url: str, name: str, pool: ConnectionPool, vector_schema: str, threshold: int | None) -> None:
        self.url = url
        self.tables = schema.Tables(name)
        self.where = describe(url)
        self.label = f"catalog {name!r} in the database {self.where}"
        self.location = redact(url) if name == DEFAULT_CATALOG else f"{redact(url)} (catalog {name})"
        self.pool = pool
        self._vector_schema = vector_schema
        self._threshold = threshold  # a build's size threshold for HNSW (None: the catalog's)
        self._seen: Meta | None = None  # the catalog as the last refresh found it
        self._refused: tuple[int, str] | None = None  # (version, why) of a catalog `accept` refused
        self._build: BuildSession | None = None

    @classmethod
    def open(
        cls, location: str, options: StoreOptions, create: bool = False, *, timeout: float = POOL_TIMEOUT_S
    ) -> PostgresCatalog:
        """Connect, check the server (PostgreSQL 13+, pgvector 0.8+, created in the database if missing) and
        the catalog's table layout, and open the pool; with `create`, the catalog need not be built yet.
        Any failure here is one line (StoreUnavailable when the database cannot be reached)."""
        if options.backend or options.url or options.collection:
            raise UserError(
                "--backend, --url and --collection choose the vector index of an index folder; "
                "a catalog in PostgreSQL searches with pgvector"
            )
        name = check_name(options.catalog or DEFAULT_CATALOG)
        where = describe(location)
        with connect(location, "fashionrec") as conn:
            try:
                vector_schema = check_server(conn, where)
                schema.check_layout(conn, schema.Tables(name))
            except psycopg.Error as e:
                raise UserError(f"cannot read the catalog database {where}: {first_line(e)}") from None
        pool = open_pool(location, where, vector_schema, POOL_SIZE, timeout)
        store = cls(location, name, pool, vector_schema, options.approx_threshold)
        try:
            if not create:
                store._seen = store._built()
        except BaseException:
            store.close()
            raise
        return store

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with reachable(self.where), self.pool.connection() as conn:
            try:
                yield conn
            except psycopg.errors.UndefinedTable:
                raise not_built(self.label) from None

    def _meta(self) -> Meta:
        with self._connection() as conn:
            return read_meta(conn, self.tables)

    def _built(self) -> Meta:
        meta = self._meta()
        if meta.fingerprint is None:
            raise not_built(self.label)
        return meta

    def _current(self) -> Meta:
        if self._seen is None:
            raise not_built(self.label)
        return self._seen

    # ---- reading ---------------------------------------------------------------------------------------

    def model(self) -> ModelInfo:
        model = self._current().model()
        assert model is not None  # `_seen` only ever holds a built catalog
        return model

    def version(self) -> str:
        return str(self._current().version)

    def refresh(self, accept: Callable[[ModelInfo], None] | None = None) -> None:
        """One read of the version; the catalog's settings are read again when it changed. A catalog rebuilt
        with a model `accept` refuses cannot be served at all (its old vectors are gone): every request then
        answers StoreUnavailable, until the catalog is built with this server's model again."""
        with self._connection() as conn:
            version = conn.execute(sql.SQL("SELECT version FROM {}").format(self.tables.meta)).fetchone()[0]
        if self._seen is not None and self._seen.version == version:
            return
        if self._refused is not None and self._refused[0] == version:
            raise StoreUnavailable(self._refused[1])
        meta = self._built()
        if accept is not None:
            try:
                accept(meta.model())
            except StoreUnavailable:
                raise
            except UserError as e:
                self._refused = (meta.version, f"the {self.label} cannot be served by this server: {e}")
                log.warning("%s", self._refused[1])
                raise StoreUnavailable(self._refused[1]) from None
        self._seen, self._refused = meta, None

    def count(self) -> int:
        with self._connection() as conn:
            return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.tables.items)).fetchone()[0]

    def categories(self) -> dict[str, int]:
        return dict(sorted(self._meta().category_sizes.items()))

    def page(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        where = sql.SQL("categories @> ARRAY[%(category)s::text]") if category is not None else sql.SQL("true")
        params = {"category": category, "offset": offset, "limit": limit}
        with self._connection() as conn, conn.transaction():
            total = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.tables.items, where), params
            ).fetchone()[0]
            rows = conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id OFFSET %(offset)s LIMIT %(limit)s").format(
                    _COLUMNS, self.tables.items, where
                ),
                params,
            )
            return total, [item_from_row(row) for row in rows]

    def items(self) -> list[Item]:
        """Every item, in id order (no vectors, no image bytes)."""
        with self._connection() as conn:
            rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(_COLUMNS, self.tables.items))
            return [item_from_row(row) for row in rows]

    def item(self, item_id: str) -> Item:
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE id = %s").format(_COLUMNS, self.tables.items), (item_id,)
            ).fetchone()
        if row is None:
            raise unknown_item(item_id)
        return item_from_row(row)

    def ids_with_content(self, sha256: str) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT id FROM {} WHERE image_sha256 = %s ORDER BY id").format(self.tables.items), (sha256,)
            )
            return [row[0] for row in rows]

    def image(self, item: Item) -> bytes:
        """From the database, so any server can show an item and use it as a reference; checked against
        its sha256."""
        if not item.has_image:
            raise UnknownItem(no_image(item))
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT data FROM {} WHERE sha256 = %s").format(self.tables.images), (item.sha256,)
            ).fetchone()
        if row is None:
            raise UnknownItem(f"the image of item {item.id!r} is no longer in the catalog")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise CatalogDamaged(f"the image of item {item.id!r} in the {self.label} does not match its sha256")
        return data

    def image_path(self, item: Item) -> None:
        """No file: the image is in the database."""
        return None

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        """Exact up to the catalog's size threshold, HNSW above (see `fashionrec.index.postgres.search`)."""
        with self._connection() as conn:
            return search(conn, self.tables, queries, k, exclude, category)

    def health(self) -> dict[str, Any]:
        meta = self._built()
        return {
            "backend": self.kind,
            "items": self.count(),
            "problems": [],
            "database": self.where,
            "catalog": self.tables.schema,
            "search": meta.ann or "exact",
            "version": meta.version,
        }

    # ---- writing ---------------------------------------------------------------------------------------

    def state(self) -> CatalogState | None:
        try:
            meta = self._meta()
        except StoreUnavailable:
            raise
        except UserError:  # not built: the schema or its tables are missing
            return None
        model = meta.model()
        if model is None:  # a first build was killed before it committed
            return None
        return CatalogState(model, meta.images_root, self.items())

    def staged(self, fingerprint: str, preprocess_key: str) -> frozenset[str]:
        return self._session().staged(model_key(fingerprint, preprocess_key))

    def stage(self, changes: ChangeSet) -> None:
        self._session().stage(changes)

    def apply(self, changes: ChangeSet) -> dict[str, Any]:
        """A build on its locked connection, which it then releases; a single-item change on a pooled one,
        refused when the catalog was rebuilt with another model since this store last looked."""
        if changes.model is not None:
            session = self._session()
            try:
                with reachable(self.where):
                    meta = apply_changes(session.conn, self.tables, self.label, changes, threshold=self._threshold)
            finally:  # the build is over: its lock goes
                session.close()
                self._build = None
        else:
            expected = None if self._seen is None else self._seen.model()
            with self._connection() as conn:
                meta = apply_changes(conn, self.tables, self.label, changes, expected=expected)
        self._seen, self._refused = meta, None
        return {
            "kind": self.kind,
            "catalog": self.tables.schema,
            "search": meta.ann or "exact",
            "version": meta.version,
        }

    def _session(self) -> BuildSession:
        if self._build is None:
            self._build = BuildSession(self.url, self.tables, self.label, self.where, self._vector_schema)
        return self._build

    def drop(self) -> None:
        """Delete the whole catalog: its schema and everything in it."""
        with self._connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.tables.schema)))

    def close(self) -> None:
        if self._build is not None:
            self._build.close()
            self._build = None
        self.pool.close()

    def __enter__(self) -> PostgresCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
