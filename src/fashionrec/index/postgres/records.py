"""Catalog items as rows of the items table and back: the same `Item` every store keeps, its product fields
in columns of their own (a price as `numeric`), its image by content hash."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from PIL import Image, UnidentifiedImageError
from psycopg.types.json import Jsonb

from fashionrec.errors import UserError
from fashionrec.index.images import FORMATS
from fashionrec.index.items import Item, Product

# The items table's columns other than the vector, in the order `item_row` gives them.
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
    "source",
)
TYPES = ("text", "text[]", "text", "numeric", "text", "text", "jsonb", "text", "text", "bigint", "bigint", "text")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def model_key(fingerprint: str, preprocess_key: str) -> str:
    """What a staged vector is filed under: vectors of two models or preprocessings never meet."""
    return f"{fingerprint}/{preprocess_key}"


def item_row(item: Item) -> tuple[Any, ...]:
    """The values of COLUMNS."""
    product = item.product
    price = None if product.price is None else Decimal(product.price)
    return (
        item.id,
        list(item.categories),
        product.title,
        price,
        product.currency,
        product.url,
        Jsonb(dict(product.attributes)),
        item.sha256 or None,  # a "vector" item has no image
        item.path,
        item.size,
        item.mtime_ns,
        item.source,
    )


def item_from_row(row: tuple[Any, ...]) -> Item:
    """An item from the values of COLUMNS (the price as the shop wrote it: numeric keeps its decimals)."""
    values = dict(zip(COLUMNS, row, strict=True))
    price = values["price"]
    product = Product(
        values["title"], None if price is None else str(price), values["currency"], values["url"], values["attributes"]
    )
    return Item(
        values["id"],
        values["path"],
        values["size"],
        values["mtime_ns"],
        values["image_sha256"] or "",
        tuple(values["categories"]),
        product,
        values["source"],
    )


def media_type(data: bytes) -> str:
    """The media type of image bytes, read from their header; UserError for anything but JPEG/PNG/WebP."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return MEDIA_TYPES[image.format]
    except (UnidentifiedImageError, OSError, KeyError):
        raise UserError("the image is not a JPEG, PNG or WebP file") from None
