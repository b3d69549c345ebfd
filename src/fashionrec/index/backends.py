"""The vector indexes a folder catalog keeps its vectors in. One interface; each index is one module and
one entry in `BACKENDS`, imported by name only when used (so no backend module imports this one back)."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.items import Item
from fashionrec.index.store import Hit, StoreOptions

BACKENDS = {
    "faiss": "fashionrec.index.faiss_backend:FaissBackend",
    "qdrant": "fashionrec.index.qdrant_backend:QdrantBackend",
}
DEFAULT_BACKEND = "faiss"


class Searcher(Protocol):
    """One version of an index, opened for searching and safe to share between threads."""

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        """Top-`k` (item, score) per query row, best first, never an id in `exclude`; with `category`,
        only items in that category, ranked as among the whole catalog."""

    def get(self, item_id: str) -> Item | None:
        """The item as the index holds it (Qdrant: from the server, so ids added since are found)."""

    def health(self) -> None:
        """StoreUnavailable when the index cannot be reached."""


class Backend(Protocol):
    """Where L2-normalised item vectors are kept, searched by inner product."""

    location: dict[str, Any]  # kind, and where the store lives; equal locations mean the same store

    @classmethod
    def location_from(cls, options: StoreOptions) -> dict[str, Any]:
        """The location command-line settings ask for; a UserError names a missing or wrong one."""

    @classmethod
    def connect(cls, location: dict[str, Any], index_dir: Path, options: StoreOptions) -> Backend:
        """Reach the store a location or manifest entry names (StoreUnavailable when it cannot be reached)."""

    def sync(
        self,
        items: Sequence[Item],
        vectors: np.ndarray,
        changed: Collection[str],
        removed: Collection[str],
        reset: bool,
    ) -> dict[str, Any]:
        """Make the store hold exactly `items` -> `vectors`. `changed`/`removed` name what differs from the
        last sync, for stores that update in place; `reset` says the store's current content is not to be
        trusted. Returns the manifest entry `searcher` needs to open this version again."""

    def searcher(self, entry: dict[str, Any], items: Sequence[Item]) -> Searcher:
        """The version `entry` names, for searching; CatalogDamaged when its files fail their check."""

    def close(self) -> None:
        """Release files and connections."""


def backend_class(kind: str) -> Any:
    if kind not in BACKENDS:
        raise UserError(f"unknown backend {kind!r}; use one of: {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def requested_location(options: StoreOptions) -> dict[str, Any]:
    """The backend location command-line settings ask for (FAISS when they name none)."""
    return backend_class(options.backend or DEFAULT_BACKEND).location_from(options)


def connect_backend(location: dict[str, Any], index_dir: Path, options: StoreOptions) -> Backend:
    """The backend a manifest entry (or `requested_location`) names."""
    return backend_class(location["kind"]).connect(location, Path(index_dir), options)


def same_location(backend: Backend | None, entry: dict[str, Any]) -> bool:
    """Whether `backend` is the store a manifest entry names (an entry holds more: files, tuning)."""
    return backend is not None and all(entry.get(key) == value for key, value in backend.location.items())
