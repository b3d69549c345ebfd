"""The tables of one catalog. A catalog is a PostgreSQL schema, so one database holds several:

- `catalog_meta`: one row; what built the catalog (model fingerprint, preprocessing, dimension), its
  search settings, the number of items per category, and `version`, bumped by every transaction that
  changes the catalog.
- `items`: one row per product: categories, product fields, the image's sha256 (none for an item
  imported by its vector alone), where the image came from (a file under the images root, an upload),
  and the vector (`vector(dim)`; an HNSW index above the size threshold).
- `images`: image bytes by content hash (identical pictures are stored once).
- `pending`: vectors a build has encoded but not yet committed, by model and content hash, so a build
  that is killed can be finished without encoding them again.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from fashionrec.errors import UserError
from fashionrec.index.items import SOURCES
from fashionrec.index.postgres.names import check_name

LAYOUT = 2  # the version of this table layout, recorded in catalog_meta (2: items keep their source)
ITEMS, NEXT_ITEMS = "items", "items_next"
# Index names are relation names, unique within the schema: a rebuilt table's are renamed with it.
INDEX_SUFFIXES = ("pkey", "categories", "image", "embedding")


class Tables:
    """Qualified names of one catalog's tables, for composing statements."""

    def __init__(self, schema: str) -> None:
        self.schema = check_name(schema)
        self.meta = self.table("catalog_meta")
        self.items = self.table(ITEMS)
        self.images = self.table("images")
        self.pending = self.table("pending")

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def index(self, table: str, suffix: str) -> sql.Identifier:
        return sql.Identifier(self.schema, f"{table}_{suffix}")


def lock_key(purpose: str, tables: Tables) -> str:
    """Text hashed into an advisory lock key (`hashtextextended`): one lock per catalog and purpose."""
    return f"fashionrec {purpose} {tables.schema}"


def ensure(conn: psycopg.Connection, tables: Tables, approx_threshold: int) -> None:
    """Create the catalog's schema and the tables a build stages into, if missing. Two processes doing
    this at once would collide in the system catalogs: an advisory lock serialises them."""
    t = tables
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key("schema", t),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(t.schema)))
        conn.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {meta} (
                    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    layout integer NOT NULL,
                    version bigint NOT NULL DEFAULT 0,
                    fingerprint text,
                    checkpoint text,
                    preprocess jsonb,
                    dim integer,
                    images_root text,
                    approx_threshold integer NOT NULL,
                    ann text CHECK (ann = 'hnsw'),
                    category_sizes jsonb NOT NULL DEFAULT '{{}}',
                    updated_at timestamptz NOT NULL DEFAULT now())"""
            ).format(meta=t.meta)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} (layout, approx_threshold) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(t.meta),
            (LAYOUT, approx_threshold),
        )
        if not exists(conn, t, "images"):
            columns = "sha256 text PRIMARY KEY, media_type text NOT NULL, data bytea NOT NULL"
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(t.images, sql.SQL(columns)))
            # JPEG, PNG and WebP are compressed already: stored out of line without another try.
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN data SET STORAGE EXTERNAL").format(t.images))
        conn.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {pending} (
                    model text NOT NULL,
                    sha256 text NOT NULL REFERENCES {images},
                    embedding vector NOT NULL,
                    PRIMARY KEY (model, sha256))"""
            ).format(pending=t.pending, images=t.images)
        )
    check_layout(conn, t)


def exists(conn: psycopg.Connection, tables: Tables, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"{tables.schema}.{name}",)).fetchone()[0] is not None


def check_layout(conn: psycopg.Connection, tables: Tables) -> None:
    """A catalog of another table layout would be misread."""
    if not exists(conn, tables, "catalog_meta"):
        return
    layout = conn.execute(sql.SQL("SELECT layout FROM {}").format(tables.meta)).fetchone()[0]
    if layout > LAYOUT:
        raise UserError(
            f"catalog {tables.schema!r} has table layout {layout}, newer than this fashionrec reads ({LAYOUT}); "
            "upgrade fashionrec"
        )
    if layout < LAYOUT:
        raise UserError(
            f"catalog {tables.schema!r} has table layout {layout} of an earlier fashionrec; drop it "
            f"(DROP SCHEMA {tables.schema} CASCADE) and build it again"
        )


def create_items(conn: psycopg.Connection, tables: Tables, name: str, dim: int) -> None:
    """An items table for vectors of `dim` dimensions. Categories are an array with a GIN index: an HNSW
    scan checks them on the row it already visits, and an exact search of one category reads only its rows."""
    t = tables
    conn.execute(
        sql.SQL(
            """CREATE TABLE {table} (
                id text CONSTRAINT {pkey} PRIMARY KEY,
                categories text[] NOT NULL CHECK (cardinality(categories) > 0),
                title text,
                price numeric,
                currency text,
                url text,
                attributes jsonb NOT NULL DEFAULT '{{}}',
                image_sha256 text REFERENCES {images},
                path text NOT NULL,
                size bigint NOT NULL,
                mtime_ns bigint NOT NULL,
                source text NOT NULL CHECK (source IN ({sources})),
                embedding vector({dim}) NOT NULL)"""
        ).format(
            table=t.table(name),
            pkey=sql.Identifier(f"{name}_pkey"),
            images=t.images,
            sources=sql.SQL(", ").join(map(sql.Literal, SOURCES)),
            dim=sql.Literal(int(dim)),
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} USING gin (categories)").format(
            sql.Identifier(f"{name}_categories"), t.table(name)
        )
    )
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (image_sha256)").format(sql.Identifier(f"{name}_image"), t.table(name)))


def replace_items(conn: psycopg.Connection, tables: Tables) -> None:
    """Put the rebuilt table in place of the live one. Searches wait only for these few statements (the
    DROP's lock), not for the build, and then read the new table."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables.items))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(tables.table(NEXT_ITEMS), sql.Identifier(ITEMS)))
    for suffix in INDEX_SUFFIXES:
        conn.execute(
            sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                tables.index(NEXT_ITEMS, suffix), sql.Identifier(f"{ITEMS}_{suffix}")
            )
        )


def fit_index(conn: psycopg.Connection, tables: Tables, table: str, threshold: int, has_index: bool) -> bool:
    """Exact search up to `threshold` items, an HNSW index (inner product: the vectors are unit length)
    above; creates or drops the index when the count crosses it. Returns whether the index exists.

    CREATE INDEX blocks writes to the table until the transaction ends, not reads."""
    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(tables.table(table))).fetchone()[0]
    wanted = count > threshold
    if wanted and not has_index:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_ip_ops)").format(
                sql.Identifier(f"{table}_embedding"), tables.table(table)
            )
        )
    elif has_index and not wanted:
        conn.execute(sql.SQL("DROP INDEX {}").format(tables.index(table, "embedding")))
    return wanted
