"""Query side: reference image + feedback text -> top-k catalog items, shared by the CLI and the server."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.batcher import MicroBatcher
from fashionrec.index.catalog import Catalog
from fashionrec.index.encoder import Encoder
from fashionrec.index.images import DEFAULT_LIMITS, ImageLimits, decode_image

MAX_K = 100
MAX_TEXT_CHARS = 500


@dataclass(frozen=True)
class Match:
    id: str
    path: Path
    score: float


def check_request(text: str, k: int) -> str:
    """The stripped text, or a UserError; cheap checks that run before any image is decoded."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    text = text.strip()
    if not text:
        raise UserError("the feedback text is empty; say what should change, e.g. 'is red with long sleeves'")
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the feedback text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


class Recommender:
    """Owns the model and the catalog for the life of a process; `recommend` is safe to call from many
    threads, and concurrent calls share one model forward pass."""

    def __init__(
        self, encoder: Encoder, catalog: Catalog, limits: ImageLimits = DEFAULT_LIMITS, max_batch: int = 16
    ) -> None:
        catalog.check_encoder(encoder.fingerprint, encoder.preprocess["key"])
        self.encoder = encoder
        self.catalog = catalog
        self.limits = limits
        self._batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(
            lambda prepared: list(encoder.encode_queries(prepared)), max_batch
        )

    @classmethod
    def open(
        cls, checkpoint: Path, index_dir: Path, limits: ImageLimits = DEFAULT_LIMITS, device: str = "auto"
    ) -> Recommender:
        """Load the index first (cheap, and most likely to be wrong), then the model."""
        from fashionrec.index.model_encoder import ModelEncoder

        catalog = Catalog.open(index_dir)
        try:
            encoder = ModelEncoder.for_catalog(checkpoint, catalog.manifest.preprocess["config"], device)
            return cls(encoder, catalog, limits)
        except BaseException:
            catalog.close()
            raise

    def recommend(self, image: bytes, text: str, k: int = 10) -> list[Match]:
        """Top-k items for `image` (file bytes) changed as `text` says; the image itself is left out
        when its bytes are a catalog item's."""
        text = check_request(text, k)
        picture = decode_image(image, self.limits)
        query = self._batcher(self.encoder.prepare_query(picture, text))
        exclude = self.catalog.ids_with_content(hashlib.sha256(image).hexdigest())
        hits = self.catalog.search(query[None, :], k, exclude)[0]
        return [Match(item_id, self.catalog.path(item_id), score) for item_id, score in hits]

    def image_path(self, item_id: str) -> Path:
        """A catalog item's file; KeyError for anything else."""
        return self.catalog.path(item_id)

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
    checkpoint: Path, index_dir: Path, image: Path, text: str, k: int = 10, device: str = "auto"
) -> list[Match]:
    """One query from files on disk (what `fashionrec recommend` and the demo run)."""
    try:
        data = Path(image).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the reference image {image}: {e.strerror}") from e
    check_request(text, k)  # fail before loading the model
    recommender = Recommender.open(Path(checkpoint), Path(index_dir), device=device)
    try:
        return recommender.recommend(data, text, k)
    finally:
        recommender.close()
