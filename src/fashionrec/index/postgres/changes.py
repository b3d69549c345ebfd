"""A `ChangeSet` applied to a catalog in one transaction: a build's result, or a shop's single-item change.

The transaction first bumps the catalog's version (the row lock that orders every writer of the catalog),
checks the change against what it finds then (the model, which ids exist), and either changes the items
table in place (an update: the rows given are upserted, the removals deleted) or, for a first build or a
rebuild, fills a new table beside the live one and swaps it in. A vector left out of an upsert is taken
from a build's staged vectors or from an item with the same image content. Any error rolls all of it
back: searches never see half a change."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from fashionrec.errors import UserError
from fashionrec.index.postgres import schema
from fashionrec.index.postgres.records import COLUMNS, TYPES, item_row, media_type, model_key
from fashionrec.index.postgres.schema import NEXT_ITEMS, Tables
from fashionrec.index.postgres.writes import (
    Meta,
    bump,
    drop_unused_images,
    not_built,
    read_meta,
    settle,
    store_images,
)
from fashionrec.index.store import ChangeSet, ModelInfo, Upsert, check_same_model, duplicate_item, unknown_item

_NAMES = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))


def apply_changes(
    conn: psycopg.Connection,
    tables: Tables,
    label: str,
    changes: ChangeSet,
    *,
    threshold: int | None = None,
    expected: ModelInfo | None = None,
) -> Meta:
    """Apply `changes` (a build when `changes.model` is set) and return the catalog's new state.
    `threshold`: a build's new size threshold for HNSW (None: the catalog's). `expected`: the model a
    single-item change was encoded with (its vectors must not land in a catalog rebuilt meanwhile)."""
    t = tables
    with conn.transaction():
        meta = bump(conn, t)
        built = meta.model()
        full = changes.model is not None and (changes.reset or built is None)
        if changes.model is None:
            if built is None:
                raise not_built(label)
            if expected is not None and not _same(built, expected):
                raise UserError(f"the {label} was rebuilt with another model meanwhile; nothing was changed")
        elif not full:
            check_same_model(built, changes.model, f"the {label}")
        dim = changes.model.dim if full else meta.dim
        check_vectors(changes.upserts, dim)
        touched = _image_contents(conn, t, [*changes.removals, *(u.item.id for u in changes.upserts)])
        _load_incoming(conn, changes.upserts)
        if not full:
            _check_presence(conn, tables)
        store_missing_images(conn, t, changes.upserts, changes.images_root or meta.images_root)
        key = None if changes.model is None else model_key(changes.model.fingerprint, changes.model.preprocess["key"])
        _check_sources(conn, t, key, label, live=not full)
        limit = meta.approx_threshold if threshold is None else threshold
        if full:
            if not changes.upserts:
                raise UserError(f"nothing to put in the {label}: a catalog needs at least one item")
            has_index = _replace_items(conn, t, key, dim, limit)
        else:
            _check_removals(conn, t, changes.removals)
            _upsert(conn, t, key)  # before the removals: a moved image's vector may come from a removed item
            _remove(conn, t, changes.removals)
            has_index = meta.ann == "hnsw"
        if changes.model is not None:
            _record_build(conn, t, changes.model, changes.images_root or meta.images_root, limit)
        settle(conn, t, limit, has_index)
        if changes.model is not None:  # a build: what it staged is in the items now, or no longer wanted
            conn.execute(sql.SQL("DELETE FROM {}").format(t.pending))
            drop_unused_images(conn, t)
        else:
            drop_unused_images(conn, t, touched)
        return read_meta(conn, t)


def _record_build(conn: psycopg.Connection, tables: Tables, model: ModelInfo, root: str | None, limit: int) -> None:
    """What `manifest.json` records for a folder: the model, its full preprocessing, the images root."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET fingerprint = %s, checkpoint = %s, preprocess = %s, dim = %s, "
            "images_root = %s, approx_threshold = %s"
        ).format(tables.meta),
        (model.fingerprint, model.checkpoint, Jsonb(dict(model.preprocess)), model.dim, root, limit),
    )


def _same(a: ModelInfo, b: ModelInfo) -> bool:
    return (a.fingerprint, a.preprocess["key"]) == (b.fingerprint, b.preprocess["key"])


def check_vectors(upserts: Sequence[Upsert], dim: int | None) -> None:
    """Each vector given is a finite one of the catalog's dimension (pgvector would take NaN)."""
    for change in upserts:
        if change.vector is None:
            continue
        vector = np.asarray(change.vector)
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            raise ValueError(f"item {change.item.id!r}: a vector of shape {vector.shape}, not a finite one of {dim}")


def _image_contents(conn: psycopg.Connection, tables: Tables, ids: Sequence[str]) -> list[str]:
    """The image contents of these items now: what a change may leave unused."""
    if not schema.exists(conn, tables, schema.ITEMS):
        return []
    rows = conn.execute(sql.SQL("SELECT image_sha256 FROM {} WHERE id = ANY(%s)").format(tables.items), (list(ids),))
    return [row[0] for row in rows]


def _check_removals(conn: psycopg.Connection, tables: Tables, ids: Sequence[str]) -> None:
    held = {
        row[0]
        for row in conn.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(tables.items), (list(ids),))
    }
    missing = next((item_id for item_id in ids if item_id not in held), None)
    if missing is not None:
        raise unknown_item(missing)


def _remove(conn: psycopg.Connection, tables: Tables, ids: Sequence[str]) -> None:
    """The removals, but for ids the change also upserts (removed, then given again)."""
    conn.execute(
        sql.SQL(
            "DELETE FROM {} i WHERE id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM incoming n WHERE n.id = i.id)"
        ).format(tables.items),
        (list(ids),),
    )


def _load_incoming(conn: psycopg.Connection, upserts: Sequence[Upsert]) -> None:
    """The upserts in a temporary table (gone at commit), with the vectors given and whether each must exist."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind)) for c, kind in zip(COLUMNS, TYPES, strict=True)
    )
    conn.execute(
        sql.SQL("CREATE TEMP TABLE incoming ({}, must_exist boolean, embedding vector) ON COMMIT DROP").format(columns)
    )
    statement = sql.SQL("COPY incoming ({}, must_exist, embedding) FROM STDIN").format(_NAMES)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for change in upserts:
            vector = None if change.vector is None else np.asarray(change.vector, dtype=np.float32)
            copy.write_row((*item_row(change.item), change.must_exist, vector))


def _check_presence(conn: psycopg.Connection, tables: Tables) -> None:
    """An update needs its item, an add must not find one (checked under the version lock: no race)."""
    row = conn.execute(
        sql.SQL(
            "SELECT n.id, n.must_exist FROM incoming n WHERE n.must_exist IS NOT NULL "
            "AND n.must_exist <> EXISTS (SELECT 1 FROM {} i WHERE i.id = n.id) LIMIT 1"
        ).format(tables.items)
    ).fetchone()
    if row is not None:
        raise unknown_item(row[0]) if row[1] else duplicate_item(row[0])


def store_missing_images(
    conn: psycopg.Connection, tables: Tables, upserts: Sequence[Upsert], images_root: str | None
) -> None:
    """The bytes of every image content the upserts name that the catalog does not hold yet: an upload's,
    or the file under the images root (a build stages its images beforehand)."""
    by_content = {change.item.sha256: change for change in upserts if change.item.has_image}
    held = {
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT sha256 FROM {} WHERE sha256 = ANY(%s)").format(tables.images), (list(by_content),)
        )
    }
    rows = []
    for sha, change in by_content.items():
        if sha not in held:
            data = picture(change, images_root)
            rows.append((sha, media_type(data), data))
    store_images(conn, tables, rows)


def picture(change: Upsert, images_root: str | None) -> bytes:
    """An upsert's image bytes (an upload's, or its file's under the images root), checked against the
    sha256 its item records."""
    if change.image is not None:
        if hashlib.sha256(change.image).hexdigest() != change.item.sha256:
            raise ValueError(f"item {change.item.id!r}: its image bytes do not have the sha256 it records")
        return change.image
    relative = PurePosixPath(change.item.path)
    if images_root is None or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"item {change.item.id!r}: no image bytes, and no file under the images root")
    path = Path(images_root) / relative
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if hashlib.sha256(data).hexdigest() != change.item.sha256:
        raise UserError(f"{path} changed while the catalog was being built; run the build again")
    return data


def _vector_sources(tables: Tables, live: bool) -> tuple[sql.Composable, sql.Composable]:
    """(the FROM clause over the incoming rows, the vector of each): the one given; else, in an update, the
    item's own while its image is unchanged (a vector item has none to change); else the one this build
    staged for its image; else, in an update, that of an item with the same image."""
    joins = [
        sql.SQL("FROM incoming n LEFT JOIN {} p ON p.model = %s AND p.sha256 = n.image_sha256").format(tables.pending)
    ]
    vectors = [sql.SQL("n.embedding"), sql.SQL("p.embedding")]
    if live:
        joins += [
            sql.SQL(
                "LEFT JOIN {} own ON own.id = n.id AND own.image_sha256 IS NOT DISTINCT FROM n.image_sha256"
            ).format(tables.items),
            sql.SQL(
                "LEFT JOIN LATERAL (SELECT o.embedding FROM {} o WHERE o.image_sha256 = n.image_sha256 LIMIT 1) "
                "same ON true"
            ).format(tables.items),
        ]
        vectors = [vectors[0], sql.SQL("own.embedding"), vectors[1], sql.SQL("same.embedding")]
    return sql.SQL(" ").join(joins), sql.SQL("coalesce({})").format(sql.SQL(", ").join(vectors))


def _check_sources(conn: psycopg.Connection, tables: Tables, key: str | None, label: str, live: bool) -> None:
    """Every upsert finds its vector. A removal committed since a build began may have taken the only one."""
    sources, vector = _vector_sources(tables, live)
    row = conn.execute(sql.SQL("SELECT n.id {} WHERE {} IS NULL LIMIT 1").format(sources, vector), (key,)).fetchone()
    if row is not None:
        raise UserError(
            f"the {label} changed during the build (no vector for the image of item {row[0]!r} any more); "
            "run the build again"
        )


def _upsert(conn: psycopg.Connection, tables: Tables, key: str | None) -> None:
    """The incoming rows into the live table, each with its vector."""
    sources, vector = _vector_sources(tables, live=True)
    new = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in COLUMNS)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in (*COLUMNS[1:], "embedding")
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {items} ({names}, embedding) SELECT {new}, {vector} {sources} "
            "ON CONFLICT (id) DO UPDATE SET {updates}"
        ).format(items=tables.items, names=_NAMES, new=new, vector=vector, sources=sources, updates=updates),
        (key,),
    )


def _replace_items(conn: psycopg.Connection, tables: Tables, key: str | None, dim: int, threshold: int) -> bool:
    """Fill a new table (and its HNSW index, above the threshold) beside the live one, then swap; returns
    whether the index exists."""
    t = tables
    schema.create_items(conn, t, NEXT_ITEMS, dim)
    sources, vector = _vector_sources(t, live=False)
    new = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in COLUMNS)
    conn.execute(
        sql.SQL("INSERT INTO {next} ({names}, embedding) SELECT {new}, {vector} {sources}").format(
            next=t.table(NEXT_ITEMS), names=_NAMES, new=new, vector=vector, sources=sources
        ),
        (key,),
    )
    has_index = schema.fit_index(conn, t, NEXT_ITEMS, threshold, has_index=False)
    schema.replace_items(conn, t)
    return has_index
