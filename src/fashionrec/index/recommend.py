"""Query side: reference image + feedback text -> top-k catalog items, shared by the CLI and the server."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.batcher import MicroBatcher
from fashionrec.index.catalog import Catalog, UnknownItem
from fashionrec.index.encoder import Encoder
from fashionrec.index.images import DEFAULT_LIMITS, ImageLimits, decode_image
from fashionrec.index.manifest import Item
from fashionrec.options import DEFAULT_DEVICE, MAX_K, MAX_TEXT_CHARS, check_feedback_text, check_k


@dataclass(frozen=True)
class Match:
    id: str
    path: Path
    score: float
    categories: tuple[str, ...]


def check_request(text: str, k: int, has_image: bool = True, item_id: str | None = None) -> str:
    """The stripped text, or a UserError; cheap checks that run before any image is decoded."""
    if has_image and item_id is not None:
        raise UserError("give the reference as an uploaded image or as a catalog item id, not both")
    if not has_image and item_id is None:
        raise UserError("give a reference: an uploaded image or a catalog item id")
    check_k(k)
    return check_feedback_text(text)


class Recommender:
    """Owns the model and the catalog for the life of a process; `recommend` is safe to call from many
    threads, and concurrent calls share one model forward pass."""

    def __init__(
        self, encoder: Encoder, catalog: Catalog, limits: ImageLimits = DEFAULT_LIMITS, max_batch: int = 16
    ) -> None:
        catalog.check_encoder(encoder)
        self.encoder = encoder
        self.catalog = catalog
        self.limits = limits
        self._batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(
            lambda prepared: list(encoder.encode_queries(prepared)), max_batch
        )

    @classmethod
    def open(
        cls,
        checkpoint: Path,
        index_dir: Path,
        limits: ImageLimits = DEFAULT_LIMITS,
        device: str = DEFAULT_DEVICE,
        text_model: str | None = None,
    ) -> Recommender:
        """Load the index first (cheap, and most likely to be wrong), then the model (`text_model`: where
        bert-base-uncased's vocabulary is, for the original system's checkpoints)."""
        from fashionrec.index.model_encoder import ModelEncoder

        catalog = Catalog.open(index_dir)
        try:
            encoder = ModelEncoder.for_catalog(checkpoint, catalog.manifest.preprocess["config"], device, text_model)
            return cls(encoder, catalog, limits)
        except BaseException:
            catalog.close()
            raise

    def recommend(
        self, image: bytes | None, text: str, k: int = 10, *, item_id: str | None = None, category: str | None = None
    ) -> list[Match]:
        """Top-k items for a reference changed as `text` says, from `category` (None: every item).

        The reference is an upload's `image` bytes or the catalog item `item_id`, whose file the index
        names (an id is only ever a key into the manifest). The reference is never its own result: the
        item itself, and any item with the same bytes."""
        text = check_request(text, k, image is not None, item_id)
        if category is not None:
            self.catalog.check_category(category)
        limits = self.limits
        if item_id is not None:
            image = self._item_bytes(self.catalog.item(item_id))
            limits = replace(limits, max_bytes=len(image))  # the catalog's own file, not an upload
        picture = decode_image(image, limits)
        query = self._batcher(self.encoder.prepare_query(picture, text))
        exclude = set(self.catalog.ids_with_content(hashlib.sha256(image).hexdigest()))
        if item_id is not None:
            exclude.add(item_id)
        hits = self.catalog.search(query[None, :], k, exclude, category)[0]
        return [Match(i, self.catalog.path(i), score, self.catalog.items[i].categories) for i, score in hits]

    def _item_bytes(self, item: Item) -> bytes:
        try:
            return self.catalog.path(item.id).read_bytes()
        except OSError:
            raise UnknownItem(f"the image of item {item.id!r} is no longer on disk") from None

    def image_path(self, item_id: str) -> Path:
        """A catalog item's file; KeyError for anything else."""
        return self.catalog.path(item_id)

    def categories(self) -> dict[str, int]:
        return self.catalog.categories()

    def items(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        """A page of the catalog (or of one category), for browsing to a starting item."""
        return self.catalog.page(category, offset, limit)

    def health(self) -> dict[str, Any]:
        return {
            "items": len(self.catalog),
            "backend": self.catalog.manifest.backend["kind"],
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
    index_dir: Path,
    image: Path | None,
    text: str,
    k: int = 10,
    device: str = DEFAULT_DEVICE,
    *,
    item_id: str | None = None,
    category: str | None = None,
    text_model: str | None = None,
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
    recommender = Recommender.open(Path(checkpoint), Path(index_dir), device=device, text_model=text_model)
    try:
        return recommender.recommend(data, text, k, item_id=item_id, category=category)
    finally:
        recommender.close()
