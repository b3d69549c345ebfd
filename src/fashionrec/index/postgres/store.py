"""A catalog in a PostgreSQL database with pgvector: everything a folder index holds (model fingerprint,
preprocessing, items and their categories), plus product fields, image bytes and vectors, shared by
every server that opens it."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from fashionrec.errors import UserError
from fashionrec.index.postgres import edit, schema
from fashionrec.index.postgres.build import Build
from fashionrec.index.postgres.connection import check_server, connect, describe, open_pool, prepare
from fashionrec.index.postgres.errors import first_line, no_such_item, reachable
from fashionrec.index.postgres.records import COLUMNS, CatalogInfo, ItemRecord, ModelStamp, StoredImage
from fashionrec.index.postgres.search import APPROX_THRESHOLD, Hit, search
from fashionrec.index.postgres.writes import check_model, read_meta

POOL_SIZE = 8
POOL_TIMEOUT_S = 5.0  # how long a request waits for a connection; while the database is down, its 503 comes after this


class PostgresCatalog:
    """One catalog (a schema named `name`) in the database at `url`. Safe to share between threads:
    each call borrows a pooled connection. Reads see every change committed before them, by any process;
    `version()` is the cheap way to ask whether anything changed since some earlier read."""

    def __init__(self, url: str, name: str, pool: ConnectionPool, vector_schema: str) -> None:
        self.url = url
        self.tables = schema.Tables(name)
        self.where = describe(url)
        self.label = f"catalog {name!r} in the database {self.where}"
        self.pool = pool
        self._vector_schema = vector_schema

    @classmethod
    def open(
        cls, url: str, name: str = schema.DEFAULT_CATALOG, pool_size: int = POOL_SIZE, timeout: float = POOL_TIMEOUT_S
    ) -> PostgresCatalog:
        """Connect, check the server (PostgreSQL 13+, pgvector 0.8+, created in the database if missing)
        and the catalog's table layout, and open the pool. A catalog need not exist yet (a build creates
        it); `info()` says whether it does. Any failure here is a one-line UserError."""
        schema.check_name(name)
        with connect(url, "fashionrec") as conn:
            where = describe(url)
            try:
                vector_schema = check_server(conn, where)
                schema.check_layout(conn, schema.Tables(name))
            except psycopg.Error as e:
                raise UserError(f"cannot read the catalog database {where}: {first_line(e)}") from None
        return cls(url, name, open_pool(url, where, vector_schema, pool_size, timeout), vector_schema)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with reachable(self.where), self.pool.connection() as conn:
            try:
                yield conn
            except psycopg.errors.UndefinedTable:
                raise UserError(f"there is no {self.label}; build one with `fashionrec index`") from None

    # Reading

    def info(self) -> CatalogInfo:
        """What built the catalog and how it is searched; UserError when it has not been built."""
        with self._connection() as conn, conn.transaction():
            meta = read_meta(conn, self.tables)
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.tables.items)).fetchone()[0]
        return CatalogInfo(
            self.tables.schema,
            meta.version,
            meta.fingerprint,
            meta.checkpoint,
            meta.preprocess,
            meta.dim,
            meta.images_root,
            meta.approx_threshold,
            meta.ann or "exact",
            count,
        )

    def version(self) -> int:
        """The catalog's version: one primary-key read, for a server to ask before each request."""
        with self._connection() as conn:
            return conn.execute(sql.SQL("SELECT version FROM {}").format(self.tables.meta)).fetchone()[0]

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        """Top-`k` (id, score) per query row, best first, never an id in `exclude`; with `category`, only
        its items (never fewer than it has, up to k). Exact up to the catalog's size threshold, HNSW above."""
        with self._connection() as conn:
            return search(conn, self.tables, queries, k, exclude, category)

    def items(self) -> list[ItemRecord]:
        """Every item, in id order (no vectors, no image bytes)."""
        with self._connection() as conn:
            rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(self._columns, self.tables.items))
            return [ItemRecord.from_row(row) for row in rows]

    def item(self, item_id: str) -> ItemRecord:
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE id = %s").format(self._columns, self.tables.items), (item_id,)
            ).fetchone()
        if row is None:
            raise no_such_item(item_id, self.label)
        return ItemRecord.from_row(row)

    def image(self, item_id: str) -> StoredImage:
        """An item's image bytes, from the database: any server can serve and encode them."""
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT g.data, g.media_type, g.sha256 FROM {items} i JOIN {images} g ON g.sha256 = i.image_sha256 "
                    "WHERE i.id = %s"
                ).format(items=self.tables.items, images=self.tables.images),
                (item_id,),
            ).fetchone()
        if row is None:
            raise no_such_item(item_id, self.label)
        return StoredImage(bytes(row[0]), row[1], row[2])

    def ids_with_content(self, sha256: str) -> list[str]:
        """Items whose image has exactly these bytes (how an upload of a catalog image is recognised)."""
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT id FROM {} WHERE image_sha256 = %s ORDER BY id").format(self.tables.items), (sha256,)
            )
            return [row[0] for row in rows]

    def categories(self) -> dict[str, int]:
        """Category name -> number of items, by name."""
        with self._connection() as conn:
            return dict(sorted(read_meta(conn, self.tables).category_sizes.items()))

    def page(self, category: str | None, offset: int, limit: int) -> tuple[int, list[ItemRecord]]:
        """(items in the category or catalog, the `limit` of them from `offset` on, in id order)."""
        where = sql.SQL("categories @> ARRAY[%(category)s::text]") if category is not None else sql.SQL("true")
        params = {"category": category, "offset": offset, "limit": limit}
        with self._connection() as conn, conn.transaction():
            total = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.tables.items, where), params
            ).fetchone()[0]
            rows = conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id OFFSET %(offset)s LIMIT %(limit)s").format(
                    self._columns, self.tables.items, where
                ),
                params,
            )
            return total, [ItemRecord.from_row(row) for row in rows]

    @property
    def _columns(self) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, COLUMNS))

    # Changing

    def build(
        self,
        model: ModelStamp,
        *,
        rebuild: bool = False,
        images_root: str | None = None,
        approx_threshold: int | None = None,
    ) -> Build:
        """Start a build (a context manager; see `fashionrec.index.postgres.build`). It creates the
        catalog's tables if needed and takes the catalog's build lock; a catalog built with another model
        or preprocessing is refused unless `rebuild`, which re-encodes every image (vectors staged by a
        killed rebuild of the same model excepted). `approx_threshold` (None: the catalog's, or
        APPROX_THRESHOLD for a new one) is the item count above which searches use HNSW."""
        conn = connect(self.url, "fashionrec build")
        try:
            with reachable(self.where):
                prepare(conn, self._vector_schema)
                if not conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (schema.lock_key("build", self.tables),)
                ).fetchone()[0]:
                    raise UserError(f"another build of the {self.label} is running; wait for it to finish")
                schema.ensure(conn, self.tables, APPROX_THRESHOLD if approx_threshold is None else approx_threshold)
                meta = read_meta(conn, self.tables)
            built = meta.fingerprint is not None
            if built and not rebuild:
                check_model(meta, model, self.label)
            threshold = meta.approx_threshold if approx_threshold is None else approx_threshold
            return Build(conn, self.tables, self.label, self.where, model, rebuild or not built, images_root, threshold)
        except BaseException:
            conn.close()
            raise

    def add(self, record: ItemRecord, image: bytes, vector: np.ndarray, model: ModelStamp) -> int:
        """Insert one item (ItemExists if its id is taken; UserError for an image that is not JPEG, PNG or
        WebP, or a `model` other than the catalog's). Returns the catalog's new version."""
        with self._connection() as conn:
            return edit.add(conn, self.tables, self.label, record, image, vector, model)

    def update(
        self,
        item_id: str,
        changes: Mapping[str, Any] | None = None,
        *,
        image: bytes | None = None,
        vector: np.ndarray | None = None,
        model: ModelStamp | None = None,
    ) -> int:
        """Change fields of one item (keys of `changes`: categories, title, price, currency, url,
        attributes) and/or its image (with its vector and model). NoSuchItem for an unknown id."""
        with self._connection() as conn:
            return edit.update(conn, self.tables, self.label, item_id, changes or {}, image, vector, model)

    def remove(self, item_id: str) -> int:
        """Delete one item; NoSuchItem for an unknown id. Returns the catalog's new version."""
        with self._connection() as conn:
            return edit.remove(conn, self.tables, self.label, item_id)

    def drop(self) -> None:
        """Delete the whole catalog: its schema and everything in it."""
        with self._connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.tables.schema)))

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> PostgresCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
