"""What the transactions that change a catalog share: the version bump that is the catalog's write
lock, keeping the HNSW index and the category sizes in step with the items, and storing and dropping
image bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from fashionrec.errors import UserError
from fashionrec.index.postgres import schema
from fashionrec.index.postgres.schema import Tables
from fashionrec.index.store import ModelInfo


class Meta(NamedTuple):
    version: int
    fingerprint: str | None  # None until the first build commits
    checkpoint: str | None
    preprocess: dict[str, Any] | None
    dim: int | None
    images_root: str | None
    approx_threshold: int
    ann: str | None
    category_sizes: dict[str, int]

    def model(self) -> ModelInfo | None:
        """What built the catalog: None until its first build commits."""
        if self.fingerprint is None:
            return None
        return ModelInfo(self.fingerprint, self.checkpoint or "", dict(self.preprocess or {}), int(self.dim or 0))


FIELDS = sql.SQL(", ").join(map(sql.Identifier, Meta._fields))


def read_meta(conn: psycopg.Connection, tables: Tables) -> Meta:
    return Meta(*conn.execute(sql.SQL("SELECT {} FROM {}").format(FIELDS, tables.meta)).fetchone())


def bump(conn: psycopg.Connection, tables: Tables) -> Meta:
    """The catalog's new version, taken first in a transaction: the row lock it holds until commit
    orders all writers of one catalog, and a rollback takes the bump back with everything else."""
    row = conn.execute(
        sql.SQL("UPDATE {} SET version = version + 1, updated_at = now() RETURNING {}").format(tables.meta, FIELDS)
    ).fetchone()
    if row is None:
        raise UserError(f"catalog {tables.schema!r} has no catalog_meta row; rebuild it")
    return Meta(*row)


def not_built(label: str) -> UserError:
    return UserError(f"the {label} has not been built yet; build it with `fashionrec index`")


def require_built(meta: Meta, label: str) -> None:
    if meta.fingerprint is None:
        raise not_built(label)


def settle(conn: psycopg.Connection, tables: Tables, threshold: int, has_index: bool) -> bool:
    """After the items changed: the HNSW index made or dropped as the count crossed `threshold`, and
    catalog_meta's index flag and items per category (which searches read to pick their path) brought
    up to date. Returns whether the index exists."""
    ann = schema.fit_index(conn, tables, schema.ITEMS, threshold, has_index)
    conn.execute(
        sql.SQL(
            "UPDATE {meta} SET ann = %s, category_sizes = coalesce((SELECT jsonb_object_agg(name, n) FROM "
            "(SELECT name, count(*) AS n FROM {items}, unnest(categories) AS name GROUP BY name) AS sizes), '{{}}')"
        ).format(meta=tables.meta, items=tables.items),
        ("hnsw" if ann else None,),
    )
    return ann


def drop_unused_images(conn: psycopg.Connection, tables: Tables, only: Sequence[str] | None = None) -> None:
    """Image bytes neither an item nor a staged vector refers to (of the contents `only`, when given)."""
    among = sql.SQL("g.sha256 = ANY(%(only)s) AND") if only is not None else sql.SQL("")
    conn.execute(
        sql.SQL(
            "DELETE FROM {images} g WHERE {among} "
            "NOT EXISTS (SELECT 1 FROM {items} i WHERE i.image_sha256 = g.sha256) "
            "AND NOT EXISTS (SELECT 1 FROM {pending} p WHERE p.sha256 = g.sha256)"
        ).format(images=tables.images, among=among, items=tables.items, pending=tables.pending),
        {"only": None if only is None else list(only)},
    )


def store_images(conn: psycopg.Connection, tables: Tables, images: Sequence[tuple[str, str, bytes]]) -> None:
    """(sha256, media type, bytes) rows, each stored once whoever stores it too."""
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} (sha256, media_type, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING").format(
                tables.images
            ),
            images,
        )
