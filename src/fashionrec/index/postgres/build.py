"""A build's session with the catalog database: the catalog's build lock, and the vectors it stages.

A build encodes new image contents a batch at a time; each batch is staged (its image bytes and vectors,
by model and content hash, in `pending`) in a transaction of its own, where no search looks. Only the
build's final change (`changes.apply_changes`) puts them in the items table. A build killed before that
leaves its staged batches behind, and the next build of the same model takes them instead of encoding
those images again."""

from __future__ import annotations

import numpy as np
from psycopg import sql

from fashionrec.errors import UserError
from fashionrec.index.postgres import schema
from fashionrec.index.postgres.changes import check_vectors, store_missing_images
from fashionrec.index.postgres.connection import connect, prepare
from fashionrec.index.postgres.errors import reachable
from fashionrec.index.postgres.records import model_key
from fashionrec.index.postgres.schema import Tables
from fashionrec.index.postgres.search import APPROX_THRESHOLD
from fashionrec.index.store import ChangeSet


class BuildSession:
    """A connection of its own holding the catalog's build lock (a session advisory lock: released when
    the process dies, or its connection does), so two builds of one catalog never run at once. Creates
    the catalog's tables if needed."""

    def __init__(self, url: str, tables: Tables, label: str, where: str, vector_schema: str) -> None:
        self.tables, self.label, self.where = tables, label, where
        self.conn = connect(url, "fashionrec build")
        try:
            with reachable(where):
                prepare(self.conn, vector_schema)
                lock = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
                if not self.conn.execute(lock, (schema.lock_key("build", tables),)).fetchone()[0]:
                    raise UserError(f"another build of the {label} is running; wait for it to finish")
                schema.ensure(self.conn, tables, APPROX_THRESHOLD)
        except BaseException:
            self.conn.close()
            raise

    def staged(self, key: str) -> frozenset[str]:
        """Image contents with a vector of the model `key` staged by a build that did not finish."""
        with reachable(self.where):
            query = sql.SQL("SELECT sha256 FROM {} WHERE model = %s").format(self.tables.pending)
            return frozenset(row[0] for row in self.conn.execute(query, (key,)))

    def stage(self, changes: ChangeSet) -> None:
        """The upserts' image bytes and vectors, committed in one transaction (invisible to searches)."""
        upserts = [change for change in changes.upserts if change.vector is not None]
        if not upserts or changes.model is None:
            return
        key = model_key(changes.model.fingerprint, changes.model.preprocess["key"])
        check_vectors(upserts, changes.model.dim)
        t = self.tables
        with reachable(self.where), self.conn.transaction():
            # A share lock on the version row: a removal committing meanwhile must not drop these images.
            self.conn.execute(sql.SQL("SELECT 1 FROM {} FOR SHARE").format(t.meta))
            store_missing_images(self.conn, t, upserts, changes.images_root)
            with self.conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} (model, sha256, embedding) VALUES (%s, %s, %s) "
                        "ON CONFLICT (model, sha256) DO UPDATE SET embedding = EXCLUDED.embedding"
                    ).format(t.pending),
                    [(key, c.item.sha256, np.asarray(c.vector, dtype=np.float32)) for c in upserts],
                )

    def close(self) -> None:
        self.conn.close()
