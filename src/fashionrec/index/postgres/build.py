"""Building a catalog: new image content is encoded and staged in batches, each committed on its own,
then one transaction makes the items table exactly what the build was given.

Until that last transaction commits, searches see the previous catalog, unchanged. A build killed
before it leaves its staged vectors in `pending`, by model and content hash, and the next build takes
them instead of encoding those images again. An update of the same model changes only the rows that
differ; a first build or a rebuild fills a new table beside the live one and swaps it in."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from fashionrec.errors import UserError
from fashionrec.index.postgres import schema
from fashionrec.index.postgres.errors import reachable
from fashionrec.index.postgres.records import COLUMNS, ItemRecord, ModelStamp, media_type
from fashionrec.index.postgres.schema import NEXT_ITEMS, Tables
from fashionrec.index.postgres.writes import bump, check_model, drop_unused_images, settle, store_images

# The incoming item table has the items table's columns (not the vector), with their types.
INCOMING_TYPES = (
    "text",
    "text[]",
    "text",
    "numeric",
    "text",
    "text",
    "jsonb",
    "text",
    "text",
    "bigint",
    "bigint",
)
_FIELDS = [c for c in COLUMNS if c != "id"]  # what an update of an existing row may change


class Content(NamedTuple):
    """An image encoded by a build: its bytes and vector, keyed by the bytes' sha256."""

    sha256: str
    data: bytes
    vector: np.ndarray


@dataclass(frozen=True)
class BuildResult:
    items: int
    added: int
    updated: int  # rows whose fields or image changed
    unchanged: int
    removed: int
    staged: int  # images encoded and staged by this build (not those a killed build had staged)
    index: str  # "exact" or "hnsw"
    version: int


class Build:
    """One build, holding the catalog's build lock (a session advisory lock: released if the process
    dies) on its own connection. Use as a context manager; `stored` says which image contents need no
    encoding, `stage` saves encoded ones, `commit` makes the new catalog live."""

    def __init__(
        self,
        conn: psycopg.Connection,
        tables: Tables,
        label: str,
        where: str,
        model: ModelStamp,
        full: bool,
        images_root: str | None,
        approx_threshold: int,
    ) -> None:
        self.conn, self.tables, self.label, self.where = conn, tables, label, where
        self.model, self.full = model, full  # full: a new table swapped in, nothing reused from the live one
        self.images_root, self.approx_threshold = images_root, approx_threshold
        self.staged = 0
        with reachable(where):
            self.dim: int | None = self._dim()
            self.stored: frozenset[str] = self._stored()

    def __enter__(self) -> Build:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _dim(self) -> int | None:
        """The dimension vectors must have: the live catalog's on an update, else what was staged."""
        t = self.tables
        if not self.full:
            return self.conn.execute(sql.SQL("SELECT dim FROM {}").format(t.meta)).fetchone()[0]
        row = self.conn.execute(
            sql.SQL("SELECT vector_dims(embedding) FROM {} WHERE model = %s LIMIT 1").format(t.pending),
            (self.model.key,),
        ).fetchone()
        return None if row is None else row[0]

    def _stored(self) -> frozenset[str]:
        """Content hashes with a vector of this model already in the database: staged, or (on an update)
        held by a live item."""
        t = self.tables
        staged = sql.SQL("SELECT sha256 FROM {} WHERE model = %s").format(t.pending)
        query = staged if self.full else sql.SQL("{} UNION SELECT image_sha256 FROM {}").format(staged, t.items)
        return frozenset(row[0] for row in self.conn.execute(query, (self.model.key,)))

    def stage(self, contents: Sequence[Content]) -> None:
        """Save encoded images and their vectors in one transaction of their own (invisible to searches)."""
        if not contents:
            return
        types = {}
        for content in contents:
            if hashlib.sha256(content.data).hexdigest() != content.sha256:
                raise ValueError(f"the bytes staged as {content.sha256[:12]} have another sha256")
            vector = np.asarray(content.vector, dtype=np.float32)
            if vector.ndim != 1 or not np.isfinite(vector).all():
                raise ValueError(f"the vector of {content.sha256[:12]} is not a finite 1-d vector")
            if self.dim is None:
                self.dim = len(vector)
            if len(vector) != self.dim:
                raise ValueError(f"vectors of {len(vector)} dimensions staged for a catalog of {self.dim}")
            types[content.sha256] = media_type(content.data)
        t = self.tables
        with reachable(self.where), self.conn.transaction():
            # A share lock on the version row: an item removal in the meantime must not drop these images.
            self.conn.execute(sql.SQL("SELECT 1 FROM {} FOR SHARE").format(t.meta))
            have = {
                row[0]
                for row in self.conn.execute(
                    sql.SQL("SELECT sha256 FROM {} WHERE sha256 = ANY(%s)").format(t.images),
                    ([c.sha256 for c in contents],),
                )
            }
            new = {c.sha256: c.data for c in contents if c.sha256 not in have}
            store_images(self.conn, t, [(sha, types[sha], data) for sha, data in new.items()])
            with self.conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} (model, sha256, embedding) VALUES (%s, %s, %s) "
                        "ON CONFLICT (model, sha256) DO UPDATE SET embedding = EXCLUDED.embedding"
                    ).format(t.pending),
                    [(self.model.key, c.sha256, np.asarray(c.vector, dtype=np.float32)) for c in contents],
                )
        self.staged += len(contents)
        self.stored = self.stored | {c.sha256 for c in contents}

    def commit(self, records: Sequence[ItemRecord]) -> BuildResult:
        """In one transaction: the catalog holds exactly `records`, each with the vector of its image
        content (staged, or on an update taken from a live item with the same content)."""
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids repeat in one build")
        if self.full and not records:
            raise UserError(f"nothing to put in the {self.label}: a catalog needs at least one item")
        missing = next((r for r in records if r.sha256 not in self.stored), None)
        if missing is not None:
            raise ValueError(f"item {missing.id!r}: its image ({missing.sha256[:12]}) was never staged")
        t = self.tables
        with reachable(self.where), self.conn.transaction():
            meta = bump(self.conn, t)
            if not self.full:
                check_model(meta, self.model, self.label)
            self._load_incoming(records)
            self._check_vectors()
            if self.full:
                counts, has_index = (len(records), 0, 0, 0), self._replace_items()
            else:
                counts, has_index = self._update_items(), meta.ann == "hnsw"
            self.conn.execute(
                sql.SQL(
                    "UPDATE {} SET fingerprint = %s, checkpoint = %s, preprocess = %s, dim = %s, "
                    "images_root = %s, approx_threshold = %s"
                ).format(t.meta),
                (
                    self.model.fingerprint,
                    self.model.checkpoint,
                    Jsonb(dict(self.model.preprocess)),
                    self.dim,
                    self.images_root,
                    self.approx_threshold,
                ),
            )
            ann = settle(self.conn, t, self.approx_threshold, has_index)
            self.conn.execute(sql.SQL("DELETE FROM {}").format(t.pending))
            drop_unused_images(self.conn, t)
        added, updated, unchanged, removed = counts
        index = "hnsw" if ann else "exact"
        return BuildResult(len(records), added, updated, unchanged, removed, self.staged, index, meta.version)

    def _load_incoming(self, records: Sequence[ItemRecord]) -> None:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind))
            for c, kind in zip(COLUMNS, INCOMING_TYPES, strict=True)
        )
        self.conn.execute(sql.SQL("CREATE TEMP TABLE incoming ({}) ON COMMIT DROP").format(columns))
        with (
            self.conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY incoming ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
            ) as copy,
        ):
            for record in records:
                copy.write_row(record.row())

    def _check_vectors(self) -> None:
        """A removal committed since the build began may have taken the only vector of some content."""
        t = self.tables
        live = (
            sql.SQL("")
            if self.full
            else sql.SQL("AND NOT EXISTS (SELECT 1 FROM {} o WHERE o.image_sha256 = n.image_sha256)").format(t.items)
        )
        row = self.conn.execute(
            sql.SQL(
                "SELECT n.id FROM incoming n WHERE NOT EXISTS "
                "(SELECT 1 FROM {pending} p WHERE p.model = %s AND p.sha256 = n.image_sha256) {live} LIMIT 1"
            ).format(pending=t.pending, live=live),
            (self.model.key,),
        ).fetchone()
        if row is not None:
            raise UserError(
                f"the {self.label} changed during the build (the image of item {row[0]!r} is no longer "
                "stored); run the build again"
            )

    def _update_items(self) -> tuple[int, int, int, int]:
        """Upsert the rows that differ, then delete the rows not given: (added, updated, unchanged, removed)."""
        t = self.tables
        names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        new = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in COLUMNS)
        old = sql.SQL(", ").join(sql.SQL("cur.{}").format(sql.Identifier(c)) for c in _FIELDS)
        fresh = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in _FIELDS)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in (*_FIELDS, "embedding")
        )
        written = self.conn.execute(
            sql.SQL(
                """INSERT INTO {items} AS t ({names}, embedding)
                SELECT {new}, coalesce(p.embedding, same.embedding) FROM incoming n
                LEFT JOIN {items} cur ON cur.id = n.id
                LEFT JOIN {pending} p ON p.model = %s AND p.sha256 = n.image_sha256
                LEFT JOIN LATERAL (
                    SELECT o.embedding FROM {items} o WHERE o.image_sha256 = n.image_sha256 LIMIT 1
                ) same ON true
                WHERE cur.id IS NULL OR ({old}) IS DISTINCT FROM ({fresh})
                ON CONFLICT (id) DO UPDATE SET {updates}
                RETURNING (xmax = 0)"""
            ).format(items=t.items, names=names, new=new, pending=t.pending, old=old, fresh=fresh, updates=updates),
            (self.model.key,),
        ).fetchall()
        removed = self.conn.execute(
            sql.SQL("DELETE FROM {} i WHERE NOT EXISTS (SELECT 1 FROM incoming n WHERE n.id = i.id)").format(t.items)
        ).rowcount
        added = sum(1 for (inserted,) in written if inserted)
        total = self.conn.execute("SELECT count(*) FROM incoming").fetchone()[0]
        return added, len(written) - added, total - len(written), removed

    def _replace_items(self) -> bool:
        """Fill a new table (and its HNSW index, above the threshold) beside the live one, then swap."""
        t = self.tables
        schema.create_items(self.conn, t, NEXT_ITEMS, self.dim)
        names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        new = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in COLUMNS)
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {next} ({names}, embedding) SELECT {new}, p.embedding FROM incoming n "
                "JOIN {pending} p ON p.model = %s AND p.sha256 = n.image_sha256"
            ).format(next=t.table(NEXT_ITEMS), names=names, new=new, pending=t.pending),
            (self.model.key,),
        )
        ann = schema.fit_index(self.conn, t, NEXT_ITEMS, self.approx_threshold, has_index=False)
        schema.replace_items(self.conn, t)
        return ann
