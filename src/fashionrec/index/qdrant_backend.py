"""Qdrant, for catalogs that outgrow one machine; the same code runs against qdrant-client's local mode.

Each point's payload holds the whole item record, so a server finds items that `fashionrec index` added
after it loaded the manifest: search results and item lookups come from Qdrant, not a table in memory."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.items import Item
from fashionrec.index.store import Hit, StoreOptions, StoreUnavailable

UPLOAD_BATCH = 512
CATEGORY_FIELD = "categories"  # payload field: the item's category names, a list
ITEM_FIELD = "item"  # payload field: the item record (path, sha256, categories, product)
TIMEOUT_S = 10  # per request to a server: a lost server answers 503 after this, not never
# Point ids must be UUIDs or integers; deriving them from the item id keeps updates idempotent.
_NAMESPACE = uuid.UUID("6f0c5b1e-2d3a-4c1b-9a57-0e8f4d2c7a11")


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, item_id))


def is_server(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def make_client(url: str, api_key: str | None = None) -> Any:
    """`http(s)://...` is a server, `:memory:` an in-process store, anything else a local-mode directory."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as e:
        raise UserError("the qdrant backend needs qdrant-client: pip install 'fashionrec[qdrant]'") from e
    if is_server(url):
        # The version check would print a warning line of its own when the server is down; ours says it.
        return QdrantClient(url=url, api_key=api_key, timeout=TIMEOUT_S, check_compatibility=False)
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(path=url)


@contextlib.contextmanager
def reachable(url: str) -> Iterator[None]:
    """Qdrant's transport and server errors as one StoreUnavailable line; the client reconnects by itself,
    so the next call after the server is back succeeds."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except UnexpectedResponse as e:
        if e.status_code in (401, 403):
            raise StoreUnavailable(f"the Qdrant server at {url} refused the API key (QDRANT_API_KEY)") from None
        raise StoreUnavailable(f"the Qdrant server at {url} answered {e.status_code} {e.reason_phrase}") from None
    except (ResponseHandlingException, OSError) as e:
        cause = getattr(e, "source", e)
        raise StoreUnavailable(
            f"the Qdrant server at {url} cannot be reached ({type(cause).__name__}: {cause})"
        ) from None


class QdrantBackend:
    """Updates in place: only changed points are uploaded and removed ones deleted."""

    def __init__(self, client: Any, collection: str, url: str) -> None:
        self.client = client
        self.collection = collection
        self.url = url
        self.location: dict[str, Any] = {"kind": "qdrant", "url": url, "collection": collection}
        # Local mode is not documented as thread-safe; the server calls search from a thread pool.
        self._lock = threading.RLock()

    @classmethod
    def location_from(cls, options: StoreOptions) -> dict[str, Any]:
        if not options.url or not options.collection:
            raise UserError("--backend qdrant needs --url and --collection")
        url = options.url
        if not is_server(url) and url != ":memory:":
            url = str(Path(url).resolve())  # the manifest must reopen it from any working directory
        return {"kind": "qdrant", "url": url, "collection": options.collection}

    @classmethod
    def connect(cls, location: dict[str, Any], index_dir: Path, options: StoreOptions) -> QdrantBackend:
        """The API key comes from the options (QDRANT_API_KEY or a key file), never from the manifest."""
        backend = cls(make_client(location["url"], options.qdrant_api_key), location["collection"], location["url"])
        with backend._call():  # reachable now, or one line before anything else runs
            backend.client.collection_exists(backend.collection)
        return backend

    def sync(
        self,
        items: Sequence[Item],
        vectors: np.ndarray,
        changed: Collection[str] = (),
        removed: Collection[str] = (),
        reset: bool = False,
    ) -> dict[str, Any]:
        from qdrant_client import models

        dim = int(vectors.shape[1])
        with self._call():
            exists = self.client.collection_exists(self.collection)
            if exists and (reset or self._dim() != dim):
                self.client.delete_collection(self.collection)
                exists = False
            if exists:
                if removed:
                    gone = models.PointIdsList(points=[point_id(i) for i in removed])
                    self.client.delete(self.collection, gone)
                wanted = set(changed)
                rows = [r for r, item in enumerate(items) if item.id in wanted]
            else:
                self.client.create_collection(
                    self.collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.DOT)
                )
                if is_server(self.url):  # local mode has no payload indexes
                    self.client.create_payload_index(self.collection, CATEGORY_FIELD, models.PayloadSchemaType.KEYWORD)
                rows = list(range(len(items)))
            self._upload(items, vectors, rows)
            if self.client.count(self.collection, exact=True).count != len(items):
                # Someone else wrote to the collection: start over rather than serve stray points.
                return self.sync(items, vectors, reset=True)
        return dict(self.location)

    def _dim(self) -> int:
        return int(self.client.get_collection(self.collection).config.params.vectors.size)

    def _upload(self, items: Sequence[Item], vectors: np.ndarray, rows: list[int]) -> None:
        from qdrant_client import models

        for start in range(0, len(rows), UPLOAD_BATCH):
            batch = rows[start : start + UPLOAD_BATCH]
            self.client.upsert(
                self.collection,
                models.Batch(
                    ids=[point_id(items[r].id) for r in batch],
                    vectors=vectors[batch].astype(np.float32).tolist(),
                    payloads=[_payload(items[r]) for r in batch],
                ),
            )

    def searcher(self, entry: dict[str, Any], items: Sequence[Item]) -> QdrantSearcher:
        """The collection is live: every version searches it as it is now."""
        return QdrantSearcher(self, {item.id: item for item in items})

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[tuple[dict[str, Any], float]]]:
        """(payload, score) per point."""
        from qdrant_client import models

        must_not = [models.HasIdCondition(has_id=[point_id(i) for i in exclude])] if exclude else None
        # A payload filter inside the search (an array field matches when any element does), so the
        # top k come from the category itself rather than from a larger unfiltered k cut down afterwards.
        must = None
        if category is not None:
            must = [models.FieldCondition(key=CATEGORY_FIELD, match=models.MatchValue(value=category))]
        query_filter = models.Filter(must=must, must_not=must_not) if must or must_not else None
        results = []
        with self._call():
            for query in np.atleast_2d(queries).astype(np.float32):
                points = self.client.query_points(
                    self.collection, query=query.tolist(), limit=k, query_filter=query_filter, with_payload=True
                ).points
                results.append([(p.payload, float(p.score)) for p in points])
        return results

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The payload of the item's point."""
        with self._call():
            points = self.client.retrieve(self.collection, [point_id(item_id)], with_payload=True)
        return points[0].payload if points else None

    def health(self) -> None:
        with self._call():
            if not self.client.collection_exists(self.collection):
                raise StoreUnavailable(f"the Qdrant collection {self.collection!r} at {self.url} does not exist")

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._lock, reachable(self.url):
            yield

    def close(self) -> None:
        self.client.close()


class QdrantSearcher:
    """Items come from the points' payloads; points uploaded before payloads held the item record fall
    back to the manifest's table of the version."""

    def __init__(self, backend: QdrantBackend, table: dict[str, Item]) -> None:
        self.backend = backend
        self.table = table

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        found = self.backend.search(queries, k, exclude, category)
        return [[Hit(self._item(payload), score) for payload, score in hits] for hits in found]

    def get(self, item_id: str) -> Item | None:
        payload = self.backend.get(item_id)
        return None if payload is None else self._item(payload)

    def health(self) -> None:
        self.backend.health()

    def _item(self, payload: dict[str, Any]) -> Item:
        if ITEM_FIELD in payload:
            return Item.from_json(payload[ITEM_FIELD])
        item_id = payload["item_id"]
        return self.table.get(item_id) or Item(item_id, "", 0, 0, "", tuple(payload[CATEGORY_FIELD]))


def _payload(item: Item) -> dict[str, Any]:
    return {"item_id": item.id, CATEGORY_FIELD: list(item.categories), ITEM_FIELD: item.to_json()}
