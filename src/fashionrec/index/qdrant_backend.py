"""Qdrant, for catalogs that outgrow one machine; the same code runs against qdrant-client's local mode."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.backends import Hit
from fashionrec.index.categories import UNKNOWN

UPLOAD_BATCH = 512
CATEGORY_FIELD = "categories"  # payload field: the item's category names, a list
# Point ids must be UUIDs or integers; deriving them from the item id keeps updates idempotent.
_NAMESPACE = uuid.UUID("6f0c5b1e-2d3a-4c1b-9a57-0e8f4d2c7a11")


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, item_id))


def make_client(url: str) -> Any:
    """`http(s)://...` is a server, `:memory:` an in-process store, anything else a local-mode directory."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as e:
        raise UserError("the qdrant backend needs qdrant-client: pip install 'fashionrec[qdrant]'") from e
    if url.startswith(("http://", "https://")):
        return QdrantClient(url=url)
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(path=url)


class QdrantBackend:
    """Updates in place: only changed points are uploaded and removed ones deleted."""

    def __init__(self, client: Any, collection: str, url: str) -> None:
        self.client = client
        self.collection = collection
        self.location: dict[str, Any] = {"kind": "qdrant", "url": url, "collection": collection}
        # Local mode is not documented as thread-safe; the server calls search from a thread pool.
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, collection: str) -> QdrantBackend:
        if not url.startswith(("http://", "https://")) and url != ":memory:":
            url = str(Path(url).resolve())  # the manifest must reopen it from any working directory
        return cls(make_client(url), collection, url)

    def sync(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        changed: Collection[str] = (),
        removed: Collection[str] = (),
        reset: bool = False,
        categories: Sequence[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        from qdrant_client import models

        dim = int(vectors.shape[1])
        exists = self.client.collection_exists(self.collection)
        if exists and (reset or self._dim() != dim):
            self.client.delete_collection(self.collection)
            exists = False
        if exists:
            if removed:
                gone = models.PointIdsList(points=[point_id(i) for i in removed])
                self.client.delete(self.collection, gone)
            wanted = set(changed)
            rows = [r for r, item in enumerate(ids) if item in wanted]
        else:
            self.client.create_collection(
                self.collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.DOT)
            )
            if self.location["url"].startswith(("http://", "https://")):  # local mode has no payload indexes
                self.client.create_payload_index(self.collection, CATEGORY_FIELD, models.PayloadSchemaType.KEYWORD)
            rows = list(range(len(ids)))
        self._upload(ids, vectors, rows, categories or [(UNKNOWN,)] * len(ids))
        if self.client.count(self.collection, exact=True).count != len(ids):
            # Someone else wrote to the collection: start over rather than serve stray points.
            return self.sync(ids, vectors, reset=True, categories=categories)
        return dict(self.location)

    def _dim(self) -> int:
        return int(self.client.get_collection(self.collection).config.params.vectors.size)

    def _upload(
        self, ids: Sequence[str], vectors: np.ndarray, rows: list[int], categories: Sequence[tuple[str, ...]]
    ) -> None:
        from qdrant_client import models

        for start in range(0, len(rows), UPLOAD_BATCH):
            batch = rows[start : start + UPLOAD_BATCH]
            self.client.upsert(
                self.collection,
                models.Batch(
                    ids=[point_id(ids[r]) for r in batch],
                    vectors=vectors[batch].astype(np.float32).tolist(),
                    payloads=[{"item_id": ids[r], CATEGORY_FIELD: list(categories[r])} for r in batch],
                ),
            )

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        from qdrant_client import models

        must_not = [models.HasIdCondition(has_id=[point_id(i) for i in exclude])] if exclude else None
        # A payload filter inside the search (an array field matches when any element does), so the
        # top k come from the category itself rather than from a larger unfiltered k cut down afterwards.
        must = None
        if category is not None:
            must = [models.FieldCondition(key=CATEGORY_FIELD, match=models.MatchValue(value=category))]
        query_filter = models.Filter(must=must, must_not=must_not) if must or must_not else None
        results = []
        with self._lock:
            for query in np.atleast_2d(queries).astype(np.float32):
                points = self.client.query_points(
                    self.collection, query=query.tolist(), limit=k, query_filter=query_filter, with_payload=True
                ).points
                results.append([(p.payload["item_id"], float(p.score)) for p in points])
        return results

    def close(self) -> None:
        self.client.close()
