"""Single-item changes (a shop's admin adding, editing or removing a product), each one transaction:
visible to every server's next search once it commits, and nothing at all if it fails."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from fashionrec.errors import UserError
from fashionrec.index.postgres.errors import ItemExists, no_such_item
from fashionrec.index.postgres.records import COLUMNS, EDITABLE, ItemRecord, ModelStamp, media_type
from fashionrec.index.postgres.schema import Tables
from fashionrec.index.postgres.writes import (
    Meta,
    bump,
    check_model,
    drop_unused_images,
    require_built,
    settle,
    store_images,
)


def add(
    conn: psycopg.Connection,
    tables: Tables,
    label: str,
    record: ItemRecord,
    image: bytes,
    vector: np.ndarray,
    model: ModelStamp,
) -> int:
    """Insert a new item with its image and vector; returns the catalog's new version."""
    kind = _check_image(record.sha256, image)
    t = tables
    with conn.transaction():
        meta = _begin(conn, t, label, model, vector)
        store_images(conn, t, [(record.sha256, kind, image)])
        placeholders = sql.SQL(", ").join(sql.Placeholder() * (len(COLUMNS) + 1))
        inserted = conn.execute(
            sql.SQL("INSERT INTO {} ({}, embedding) VALUES ({}) ON CONFLICT (id) DO NOTHING RETURNING id").format(
                t.items, sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), placeholders
            ),
            (*record.row(), np.asarray(vector, dtype=np.float32)),
        ).fetchone()
        if inserted is None:
            raise ItemExists(f"the {label} already has an item with id {record.id[:200]!r}")
        settle(conn, t, meta.approx_threshold, meta.ann == "hnsw")
    return meta.version


def update(
    conn: psycopg.Connection,
    tables: Tables,
    label: str,
    item_id: str,
    changes: Mapping[str, Any],
    image: bytes | None = None,
    vector: np.ndarray | None = None,
    model: ModelStamp | None = None,
) -> int:
    """Change some of an item's fields (EDITABLE: a key present is set, to None as well) and/or its image,
    which comes with its vector and the model that encoded it. Returns the catalog's new version."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}; an update changes {', '.join(EDITABLE)}")
    if not changes and image is None:
        raise UserError("nothing to change: give at least one field or a new image")
    if "categories" in changes and not changes["categories"]:
        raise UserError("an item needs at least one category")
    if (image is None) != (vector is None) or (vector is not None and model is None):
        raise ValueError("a new image comes with its vector and the model that encoded it")
    values = {name: _column_value(name, value) for name, value in changes.items()}
    sha256 = None
    if image is not None:
        sha256 = hashlib.sha256(image).hexdigest()
        kind = _check_image(sha256, image)
        # The picture no longer comes from the catalog folder's file.
        values.update(
            image_sha256=sha256, path=None, size=None, mtime_ns=None, embedding=np.asarray(vector, np.float32)
        )
    t = tables
    with conn.transaction():
        meta = _begin(conn, t, label, model, vector)
        before = conn.execute(
            sql.SQL("SELECT image_sha256 FROM {} WHERE id = %s FOR UPDATE").format(t.items), (item_id,)
        ).fetchone()
        if before is None:
            raise no_such_item(item_id, label)
        if sha256 is not None:
            store_images(conn, t, [(sha256, kind, image)])
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values
        )
        conn.execute(
            sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(t.items, assignments), {**values, "id": item_id}
        )
        if sha256 is not None and before[0] != sha256:
            drop_unused_images(conn, t, before[0])
        if "categories" in values:
            settle(conn, t, meta.approx_threshold, meta.ann == "hnsw")
    return meta.version


def remove(conn: psycopg.Connection, tables: Tables, label: str, item_id: str) -> int:
    """Delete an item (and its image, unless another item shows the same); returns the new version."""
    t = tables
    with conn.transaction():
        meta = _begin(conn, t, label)
        row = conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = %s RETURNING image_sha256").format(t.items), (item_id,)
        ).fetchone()
        if row is None:
            raise no_such_item(item_id, label)
        drop_unused_images(conn, t, row[0])
        settle(conn, t, meta.approx_threshold, meta.ann == "hnsw")
    return meta.version


def _begin(
    conn: psycopg.Connection,
    tables: Tables,
    label: str,
    model: ModelStamp | None = None,
    vector: np.ndarray | None = None,
) -> Meta:
    """The version bump (the catalog's write lock), then the checks that need the catalog's settings."""
    meta = bump(conn, tables)
    require_built(meta, label)
    if model is not None:
        check_model(meta, model, label)
    if vector is not None and np.shape(vector) != (meta.dim,):
        raise ValueError(f"a vector of shape {np.shape(vector)} for a catalog of {meta.dim} dimensions")
    return meta


def _check_image(sha256: str, image: bytes) -> str:
    if hashlib.sha256(image).hexdigest() != sha256:
        raise ValueError(f"the image bytes do not have the sha256 {sha256[:12]} the item records")
    return media_type(image)


def _column_value(name: str, value: Any) -> Any:
    if name == "attributes":
        return Jsonb(dict(value or {}))
    if name == "categories":
        return list(value)
    return value
