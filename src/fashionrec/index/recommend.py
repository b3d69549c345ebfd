"""Query side: reference image + feedback text -> top-k catalog items, shared by the CLI and the server."""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashionrec.errors import UserError
from fashionrec.index.batcher import MicroBatcher
from fashionrec.index.edit import CatalogEditor
from fashionrec.index.encoder import Encoder
from fashionrec.index.images import CATALOG_FORMATS, DEFAULT_LIMITS, FORMATS, ImageLimits, decoded
from fashionrec.index.items import Item, Product
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import (
    CatalogStore,
    StoreOptions,
    check_category,
    check_encoder,
    check_scores,
    no_image,
)
from fashionrec.options import DEFAULT_DEVICE, MAX_K, MAX_TEXT_CHARS, check_feedback_text, check_k


@dataclass(frozen=True)
class Match:
    item: Item
    score: float
    path: Path | None  # the file holding the item's image, when it is a file

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def categories(self) -> tuple[str, ...]:
        return self.item.categories

    @property
    def product(self) -> Product:
        return self.item.product


def check_request(text: str, k: int, has_image: bool = True, item_id: str | None = None) -> str:
    """The stripped text, or a UserError; cheap checks that run before any image is decoded."""
    if has_image and item_id is not None:
        raise UserError("give the reference as an uploaded image or as a catalog item id, not both")
    if not has_image and item_id is None:
        raise UserError("give a reference: an uploaded image or a catalog item id")
    check_k(k)
    return check_feedback_text(text)


class Recommender:
    """Owns the model and the catalog for the life of a process; every method is safe to call from many
    threads, and concurrent queries share one model forward pass. Each call first takes up what the
    catalog store holds now (`CatalogStore.refresh`), so changes made elsewhere show in the next request."""

    def __init__(
        self, encoder: Encoder, catalog: CatalogStore, limits: ImageLimits = DEFAULT_LIMITS, max_batch: int = 16
    ) -> None:
        check_encoder(catalog.model(), encoder, catalog.location)
        self.encoder = encoder
        self.catalog = catalog
        self.limits = limits
        self._model_lock = threading.Lock()  # the model never runs concurrently with itself
        self._batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(self._encode_queries, max_batch)
        self.editor = CatalogEditor(catalog, self._encode_images, limits)

    @classmethod
    def open(
        cls,
        checkpoint: Path,
        location: str | Path,
        limits: ImageLimits = DEFAULT_LIMITS,
        device: str = DEFAULT_DEVICE,
        text_model: str | None = None,
        options: StoreOptions | None = None,
    ) -> Recommender:
        """Open the catalog first (cheap, and most likely to be wrong), then load the model (`text_model`:
        where bert-base-uncased's vocabulary is, for the original system's checkpoints)."""
        from fashionrec.index.model_encoder import ModelEncoder

        catalog = open_catalog(location, options)
        try:
            encoder = ModelEncoder.for_catalog(checkpoint, catalog.model().preprocess["config"], device, text_model)
            return cls(encoder, catalog, limits)
        except BaseException:
            catalog.close()
            raise

    def _encode_queries(self, prepared: Sequence[Any]) -> list[np.ndarray]:
        with self._model_lock:
            return list(self.encoder.encode_queries(prepared))

    def _encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        with self._model_lock:
            return self.encoder.encode_images(images)

    def _fresh(self) -> CatalogStore:
        """The store, with a newer version taken up if there is one (and it is of this model)."""
        self.catalog.refresh(lambda model: check_encoder(model, self.encoder, self.catalog.location))
        return self.catalog

    def recommend(
        self, image: bytes | None, text: str, k: int = 10, *, item_id: str | None = None, category: str | None = None
    ) -> list[Match]:
        """Top-k items for a reference changed as `text` says, from `category` (None: every item).

        The reference is an upload's `image` bytes or the catalog item `item_id` (an id is only ever a key
        into the catalog). The reference is never its own result: the item itself, and any item with the
        same bytes. A score no unit vectors can give is a CatalogDamaged error, never a result."""
        text = check_request(text, k, image is not None, item_id)
        catalog = self._fresh()
        if category is not None:
            check_category(catalog.categories(), category)
        limits, formats = self.limits, FORMATS
        if item_id is not None:
            item = catalog.item(item_id)
            if not item.has_image:
                raise UserError(f"{no_image(item)}; it cannot be a reference: upload a photo instead")
            image = catalog.image(item)
            # The catalog's own image, not an upload: any size, and what the original system's extractor took.
            limits, formats = replace(limits, max_bytes=len(image)), CATALOG_FORMATS
        with decoded(image, limits, formats) as picture:  # its pixels count in the decode budget until preprocessed
            prepared = self.encoder.prepare_query(picture, text)
        query = self._batcher(prepared)
        exclude = set(catalog.ids_with_content(hashlib.sha256(image).hexdigest()))
        if item_id is not None:
            exclude.add(item_id)
        hits = catalog.search(query[None, :], k, exclude, category)[0]
        check_scores(hits, catalog.location)
        return [Match(item, score, catalog.image_path(item)) for item, score in hits]

    def image(self, item_id: str) -> tuple[bytes, str]:
        """A catalog item's image and its media type; UnknownItem for any other id."""
        catalog = self._fresh()
        item = catalog.item(item_id)
        return catalog.image(item), mimetypes.guess_type(item.path)[0] or "application/octet-stream"

    def categories(self) -> dict[str, int]:
        return self._fresh().categories()

    def items(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        """A page of the catalog (or of one category), for browsing to a starting item."""
        catalog = self._fresh()
        if category is not None:
            check_category(catalog.categories(), category)
        return catalog.page(category, offset, limit)

    def add_item(self, fields: Mapping[str, str], image: bytes) -> Item:
        return self._editor().add(fields, image)

    def update_item(self, item_id: str, fields: Mapping[str, str], image: bytes | None) -> Item:
        return self._editor().update(item_id, fields, image)

    def remove_item(self, item_id: str) -> None:
        self._editor().remove(item_id)

    def _editor(self) -> CatalogEditor:
        self._fresh()
        return self.editor

    def health(self) -> dict[str, Any]:
        """StoreUnavailable when the store cannot be reached; `problems` lists what it refused to load."""
        store = self._fresh().health()
        return {
            "status": "degraded" if store["problems"] else "ok",
            **store,
            "checkpoint": self.encoder.fingerprint[:12],
            "max_k": MAX_K,
            "max_text_chars": MAX_TEXT_CHARS,
            "max_image_bytes": self.limits.max_bytes,
            "max_image_pixels": self.limits.max_pixels,
        }

    def close(self) -> None:
        self._batcher.close()
        self.catalog.close()


def recommend(
    checkpoint: Path,
    location: str | Path,
    image: Path | None,
    text: str,
    k: int = 10,
    device: str = DEFAULT_DEVICE,
    *,
    item_id: str | None = None,
    category: str | None = None,
    text_model: str | None = None,
    options: StoreOptions | None = None,
) -> list[Match]:
    """One query from files on disk (what `fashionrec recommend` and the demo run): the reference is the
    image file `image` or the catalog item `item_id`."""
    check_request(text, k, image is not None, item_id)  # fail before loading the model
    data = None
    if image is not None:
        try:
            data = Path(image).read_bytes()
        except OSError as e:
            raise UserError(f"cannot read the reference image {image}: {e.strerror}") from e
    recommender = Recommender.open(Path(checkpoint), location, device=device, text_model=text_model, options=options)
    try:
        return recommender.recommend(data, text, k, item_id=item_id, category=category)
    finally:
        recommender.close()
