"""One small interface over the vector stores, so the catalog code never knows which one it talks to."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fashionrec.errors import UserError

Hit = tuple[str, float]


class Backend(Protocol):
    """A store of L2-normalised item vectors searched by inner product."""

    location: dict[str, Any]  # kind, and where the store lives; equal locations mean the same store

    def sync(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        changed: Collection[str],
        removed: Collection[str],
        reset: bool,
        categories: Sequence[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        """Make the store hold exactly `ids` -> `vectors`, each item in its `categories` (None: unknown).

        `changed`/`removed` name what differs from the last sync (vectors or categories), for stores that
        update in place; `reset` says the store's current content is not to be trusted. Returns the
        manifest entry that `open_backend` needs to reopen the store.
        """

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        """Top-`k` (id, score) per query row, best first, never returning an id in `exclude`; with
        `category`, only items in that category, ranked as among the whole catalog."""

    def close(self) -> None:
        """Release files and connections."""


def new_backend(
    kind: str,
    index_dir: Path,
    url: str | None = None,
    collection: str | None = None,
    approx_threshold: int | None = None,
) -> Backend:
    """A backend to build into, from command-line style settings."""
    if approx_threshold is not None and approx_threshold < 0:
        raise UserError(f"the approximate-index threshold must be 0 or more, got {approx_threshold}")
    if kind == "faiss":
        from fashionrec.index.faiss_backend import FaissBackend

        if approx_threshold is None:
            return FaissBackend(index_dir)
        return FaissBackend(index_dir, approx_threshold=approx_threshold)
    if kind == "qdrant":
        from fashionrec.index.qdrant_backend import QdrantBackend

        if not url or not collection:
            raise UserError("--backend qdrant needs --url and --collection")
        return QdrantBackend.connect(url, collection)
    raise UserError(f"unknown backend {kind!r}; use faiss or qdrant")


def open_backend(
    entry: dict[str, Any], index_dir: Path, ids: Sequence[str], categories: Sequence[tuple[str, ...]] | None = None
) -> Backend:
    """Reopen the store a manifest entry describes, for searching; FAISS keeps the categories in memory,
    Qdrant has them in its payloads."""
    if entry["kind"] == "faiss":
        from fashionrec.index.faiss_backend import FaissBackend

        return FaissBackend.open(index_dir, entry, ids, categories)
    if entry["kind"] == "qdrant":
        from fashionrec.index.qdrant_backend import QdrantBackend

        return QdrantBackend.connect(entry["url"], entry["collection"])
    raise UserError(f"index uses an unknown backend {entry['kind']!r}")
