"""What the index needs from a model, so catalog and serving code can be tested without one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image


class Fingerprinted(Protocol):
    fingerprint: str


def same_model(encoder: Fingerprinted, built: str) -> bool:
    """Whether an index's recorded fingerprint is this encoder's (or what an earlier release recorded for
    the same model: `former_fingerprint`, where the encoder has one)."""
    return built == encoder.fingerprint or built == getattr(encoder, "former_fingerprint", None)


class Encoder(Protocol):
    fingerprint: str  # identifies the weights: an index refuses queries from any other model
    preprocess: dict[str, Any]  # {"key": ..., "config": {...}}, recorded in the index
    dim: int  # the length of its vectors: imported vectors must have it

    def encode_catalog(self, paths: Mapping[str, Path], batch_size: int) -> np.ndarray:
        """Target-block vectors [N, d] (L2-normalised), in the order of `paths`. An unreadable file is a
        UserError naming it; the preprocessing cache keeps what was done, so the rerun resumes."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Target-block vectors [N, d] (L2-normalised) of decoded images: items added one by one."""

    def prepare_query(self, image: Image.Image, text: str) -> Any:
        """Per-request work (preprocessing, tokenising); thread-safe, runs outside the model lock."""

    def encode_queries(self, prepared: Sequence[Any]) -> np.ndarray:
        """Reference-block vectors [B, d] (L2-normalised) for a batch of prepared queries."""
