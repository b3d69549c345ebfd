"""What a catalog is to the rest of fashionrec, wherever it is kept: the `CatalogStore` interface, the
records it reads and writes, and the errors it raises.

A catalog lives at a *location*: a folder (`fashionrec.index.folder_store`: manifest.json and a vector
index) or a URL of a registered kind (`fashionrec.index.registry`). Readers (`Recommender`, the server)
call `refresh()` before each request, then read; writers (`fashionrec index`, `fashionrec catalog`, the
admin API) describe a change as a `ChangeSet` and `apply` it, all or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.encoder import Encoder, same_model
from fashionrec.index.items import Item

# Scores of unit vectors lie in [-1, 1]; float32 rounding stays far inside this margin.
SCORE_TOLERANCE = 1e-3


class StoreUnavailable(UserError):
    """The store cannot be reached now (a database or Qdrant server down or refusing the credentials): the
    CLI prints one line (exit 2), the server answers 503 and tries again on its next request."""


class CatalogDamaged(UserError):
    """Stored data failed its integrity check (a content hash, a score no unit vector can give): never
    searched. The CLI prints one line (exit 2); a server keeps what it had loaded and reports it."""

    def __init__(self, problem: str, remedy: str = "rebuild it with `fashionrec index`") -> None:
        super().__init__(f"{problem}; {remedy}")
        self.problem = problem


class UnknownItem(UserError):
    """An item id the catalog does not hold: the server answers 404 rather than 400."""


class DuplicateItem(UserError):
    """Adding an id the catalog already holds: the server answers 409."""


def unknown_item(item_id: str) -> UnknownItem:
    """The one wording every store uses."""
    return UnknownItem(f"no catalog item with id {item_id[:200]!r}")


def duplicate_item(item_id: str) -> DuplicateItem:
    return DuplicateItem(f"the catalog already has an item with id {item_id[:200]!r}")


class Hit(NamedTuple):
    item: Item
    score: float


@dataclass(frozen=True)
class ModelInfo:
    """The model a catalog's vectors come from: vectors of another fingerprint or preprocessing never mix."""

    fingerprint: str
    checkpoint: str  # where it was loaded from when the catalog was built, for messages
    preprocess: dict[str, Any]  # {"key": ..., "config": {...}}: queries are preprocessed the same way
    dim: int


@dataclass(frozen=True)
class CatalogState:
    """What a build plans against: the catalog's model and every item, and whether its stored vectors can
    be reused (False when they failed their check: every item is then encoded again)."""

    model: ModelInfo
    images_root: str | None  # folder items' paths are relative to it
    items: list[Item]
    vectors_reusable: bool = True
    notes: tuple[str, ...] = ()  # damage found and what the next `apply` will repair, one line each


@dataclass(frozen=True)
class Upsert:
    """Add or replace one item. `vector` None keeps the stored vector (a change of fields only), or takes
    the one a build staged for the item's image content (`CatalogStore.staged`). `image`: the picture's
    bytes (an upload: the catalog keeps them, `item.path` is `<sha256>.<ext>`); None keeps what the catalog
    has, or reads the file under the images root; a "vector" item has no image at all. `must_exist`: True
    for an update (UnknownItem when absent), False for an add (DuplicateItem when present), None for builds."""

    item: Item
    vector: np.ndarray | None = None
    image: bytes | None = None
    must_exist: bool | None = None


@dataclass(frozen=True)
class ChangeSet:
    """One change, applied all or nothing. `reset`: the stored vectors are not kept (a rebuild, another
    model, damaged vectors): every item of the new catalog is an upsert with a vector. `model` and
    `images_root` are set by builds (a first build must set `model`)."""

    upserts: Sequence[Upsert] = ()
    removals: Sequence[str] = ()
    model: ModelInfo | None = None
    images_root: str | None = None
    reset: bool = False


@dataclass(frozen=True)
class StoreOptions:
    """Settings from the command line; each store reads those it knows. `backend` and its settings choose
    the vector index a folder catalog is built into (None: keep the one it has, else FAISS)."""

    backend: str | None = None
    url: str | None = None  # qdrant: server URL or local-mode folder
    collection: str | None = None  # qdrant collection
    approx_threshold: int | None = None  # faiss: above this many items, try IVF; postgres: use HNSW
    qdrant_api_key: str | None = None  # never written anywhere
    catalog: str | None = None  # postgres: the catalog's name (its table set) in the database


class CatalogStore(Protocol):
    """A catalog wherever it is kept. Reads are thread-safe; `apply` is atomic (a failed change changes
    nothing) and serialised with other writers, in this process and others."""

    kind: str  # the registry name: "folder", "postgres", ...
    location: str  # as the user gave it (a URL without its password), for messages

    def model(self) -> ModelInfo:
        """The model of the version in use."""

    def refresh(self, accept: Callable[[ModelInfo], None] | None = None) -> None:
        """Take up what is stored now, cheaply when nothing changed (a stat, a one-row query). A newer version
        that fails its checks, or that `accept` refuses (raising a UserError), is not taken: the store keeps
        what it had and lists the problem in `health()["problems"]` until a newer version replaces it."""

    def version(self) -> str:
        """A token of the version in use: equal tokens mean the same content."""

    def count(self) -> int: ...

    def categories(self) -> dict[str, int]:
        """Category name -> items in it, by name."""

    def page(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        """(items in the category or catalog, the `limit` of them from `offset` on, in id order)."""

    def item(self, item_id: str) -> Item:
        """The item, from the store itself (not a table loaded earlier); UnknownItem when absent."""

    def ids_with_content(self, sha256: str) -> list[str]:
        """Items whose image has exactly these bytes (how an uploaded catalog image is recognised)."""

    def image(self, item: Item) -> bytes:
        """The item's image bytes; UnknownItem when they are gone or it has none (`not item.has_image`: see
        `no_image`), CatalogDamaged when they fail their check."""

    def image_path(self, item: Item) -> Path | None:
        """The file holding the item's image, when it is a file (for people: `recommend --json`); None for an
        item without an image."""

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        """Top-`k` items per query row by inner product, best first, none in `exclude`; with `category`,
        only items in it, ranked as among the whole catalog. StoreUnavailable when it cannot be reached."""

    def health(self) -> dict[str, Any]:
        """`{"backend": ..., "items": n, "problems": [one line each]}` and what else helps an operator;
        StoreUnavailable when the store cannot be reached."""

    def state(self) -> CatalogState | None:
        """What a build plans against (None: an empty location); CatalogDamaged when even the item table is
        unreadable (the build then starts over from the images)."""

    def staged(self, fingerprint: str, preprocess_key: str) -> frozenset[str]:
        """Image contents (sha256) whose vectors of this model a build staged (`stage`) but never applied,
        because it was killed: the next build need not encode them. Empty for stores that do not stage."""

    def stage(self, changes: ChangeSet) -> None:
        """Keep the vectors a build has encoded so far (upserts with vectors; `model` and `images_root`
        set), out of readers' sight, where a rerun finds them should this build not finish. Nothing is
        applied. A no-op for stores whose builds start over."""

    def apply(self, changes: ChangeSet) -> dict[str, Any]:
        """Make the change, all or nothing, and use the new version at once; returns a description of the
        store after it (`{"kind": ..., ...}`) for the build summary."""

    def close(self) -> None: ...


def no_image(item: Item) -> str:
    """What every store says of the image of an item known by its vector alone."""
    return (
        f"item {item.id!r} has no image in this catalog (its vector was imported without one; "
        "`fashionrec index --from-mongo-export FILE --images FOLDER` finds the images by name)"
    )


def check_encoder(model: ModelInfo, encoder: Encoder, location: str) -> None:
    """Vectors from different weights or preprocessing live in different spaces: refuse to mix them."""
    if not same_model(encoder, model.fingerprint):
        raise UserError(
            f"the index at {location} was built with checkpoint {model.checkpoint} "
            f"(fingerprint {model.fingerprint[:12]}), not this one ({encoder.fingerprint[:12]}); "
            "query it with that checkpoint or rebuild it with `fashionrec index --rebuild`"
        )
    if encoder.preprocess["key"] != model.preprocess["key"]:
        raise UserError(
            f"the index at {location} was built with other preprocessing ({model.preprocess['config']}); "
            "rebuild it with `fashionrec index --rebuild`"
        )


def check_same_model(stored: ModelInfo, given: Encoder | ModelInfo, location: str) -> None:
    """A build or a change must not mix vectors of two models in one catalog."""
    if not same_model(given, stored.fingerprint) or stored.preprocess["key"] != given.preprocess["key"]:
        raise UserError(
            f"{location} was built with another checkpoint or preprocessing "
            f"({stored.checkpoint}, {stored.preprocess['config']}); pass --rebuild to re-encode every image"
        )


def check_category(categories: Collection[str], name: str) -> None:
    if name not in categories:
        known = ", ".join(categories) or "none"
        raise UserError(f"unknown category {name[:100]!r}; this catalog has: {known}")


def check_scores(hits: Sequence[Hit], location: str) -> None:
    """A score no pair of unit vectors can give means damaged vectors: refuse rather than rank by it."""
    for hit in hits:
        if not math.isfinite(hit.score) or abs(hit.score) > 1 + SCORE_TOLERANCE:
            raise CatalogDamaged(
                f"the catalog at {location} gave item {hit.item.id!r} the score {hit.score:.6g}, impossible for "
                "unit vectors: its vectors are damaged"
            )
