"""What goes into a catalog database and what comes back out: items, images, the model stamp."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from PIL import Image, UnidentifiedImageError
from psycopg.types.json import Jsonb

from fashionrec.errors import UserError
from fashionrec.index.images import FORMATS

# The items table's columns other than the vector, in the order ItemRecord.row() gives them.
COLUMNS = (
    "id",
    "categories",
    "title",
    "price",
    "currency",
    "url",
    "attributes",
    "image_sha256",
    "path",
    "size",
    "mtime_ns",
)
EDITABLE = ("categories", "title", "price", "currency", "url", "attributes")  # what an update may change
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelStamp:
    """What a catalog's vectors were encoded with: vectors of two stamps never share a catalog."""

    fingerprint: str
    preprocess: Mapping[str, Any]  # {"key": ..., "config": {...}}, as an Encoder's `preprocess`
    checkpoint: str = ""  # where the model was loaded from; shown in messages only

    @property
    def key(self) -> str:
        return f"{self.fingerprint}/{self.preprocess['key']}"


@dataclass(frozen=True)
class ItemRecord:
    """One product: its fields, its image's content hash and, for an image from a catalog folder, the
    file it came from (path relative to the images root, size, mtime_ns: an unchanged file is not hashed
    again). The vector and the image bytes travel separately."""

    id: str
    categories: tuple[str, ...]
    sha256: str
    title: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    url: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    size: int | None = None
    mtime_ns: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        if not self.id:
            raise ValueError("an item needs an id")
        if not self.categories:
            raise ValueError(f"item {self.id!r} has no category")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"item {self.id!r}: {self.sha256!r} is not a sha256 hex digest")

    def row(self) -> tuple[Any, ...]:
        """The values of COLUMNS."""
        return (
            self.id,
            list(self.categories),
            self.title,
            self.price,
            self.currency,
            self.url,
            Jsonb(dict(self.attributes)),
            self.sha256,
            self.path,
            self.size,
            self.mtime_ns,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ItemRecord:
        values = dict(zip(COLUMNS, row, strict=True))
        values["sha256"] = values.pop("image_sha256")
        return cls(**values)


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    media_type: str  # image/jpeg, image/png or image/webp
    sha256: str


@dataclass(frozen=True)
class CatalogInfo:
    """What `manifest.json` says about a folder index, for a catalog in a database."""

    name: str
    version: int  # bumped by every change: equal versions mean an unchanged catalog
    fingerprint: str
    checkpoint: str
    preprocess: dict[str, Any]
    dim: int
    images_root: str | None
    approx_threshold: int
    index: str  # "exact" or "hnsw"
    items: int


def media_type(data: bytes) -> str:
    """The media type of image bytes, read from their header; UserError for anything but JPEG/PNG/WebP."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return MEDIA_TYPES[image.format]
    except (UnidentifiedImageError, OSError, KeyError):
        raise UserError("the image is not a JPEG, PNG or WebP file") from None
