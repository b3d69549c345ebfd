"""A catalog item and its product details, and the checks every way of writing them shares: the products
CSV of `fashionrec index`, the admin API and `fashionrec catalog`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from fashionrec.errors import UserError
from fashionrec.index.categories import UNKNOWN, check_name

MAX_ID_CHARS = 256
MAX_TITLE_CHARS = 500
MAX_CURRENCY_CHARS = 16
MAX_URL_CHARS = 2048
MAX_ATTRIBUTE_CHARS = 1000
PRODUCT_FIELDS = ("title", "price", "currency", "url")  # every other field is an attribute
RESERVED_FIELDS = ("id", "category")
# Digits with an optional decimal point: exact, as the shop wrote it ("19.90" stays "19.90").
_PRICE = re.compile(r"\d{1,12}(\.\d{1,6})?")

# A file under the images root, bytes the catalog keeps itself, or a vector alone (imported without its image).
SOURCES = ("folder", "upload", "vector")


@dataclass(frozen=True)
class Product:
    """What a shopper reads on a card. `price` is a decimal as text, never a float, so 19.90 stays 19.90."""

    title: str | None = None
    price: str | None = None
    currency: str | None = None
    url: str | None = None  # the product page: http(s) only
    attributes: dict[str, str] = field(default_factory=dict)  # any other column of the products CSV

    def to_json(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in PRODUCT_FIELDS}, "attributes": dict(self.attributes)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Product:
        raw = raw or {}
        return cls(**{name: raw.get(name) for name in PRODUCT_FIELDS}, attributes=dict(raw.get("attributes") or {}))

    def updated(self, fields: Mapping[str, str]) -> Product:
        """This product with the fields named in `fields` (checked as by `parse_product`) replaced; a blank
        value clears its field or attribute."""
        given = parse_product(fields)
        values = {name: getattr(given, name) for name in PRODUCT_FIELDS if name in fields}
        kept = {name: value for name, value in self.attributes.items() if name not in fields}
        return replace(self, **values, attributes={**kept, **given.attributes})


@dataclass(frozen=True)
class Item:
    """One catalog image; size/mtime_ns spot unchanged files cheaply, sha256 settles the rest.

    `path` is relative to the catalog's images root for a "folder" item, the name the catalog keeps an
    "upload" item's bytes under (`<sha256>.<ext>`) for an upload, and the name a "vector" item was imported
    under (`fashionrec index --from-mongo-export` without `--images`: no image, size 0, sha256 ""); its
    extension gives the media type."""

    id: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    categories: tuple[str, ...] = (UNKNOWN,)  # indexes built before categories existed load as unknown
    product: Product = Product()
    source: str = "folder"

    @property
    def has_image(self) -> bool:
        """False for an item known by its vector alone: it is a result, never a reference or a picture."""
        return self.source != "vector"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "categories": list(self.categories),
            "product": self.product.to_json(),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Item:
        source = raw.get("source", "folder")
        if source not in SOURCES:
            raise ValueError(f"item source {source!r} is not one of {SOURCES}")
        return cls(
            id=str(raw["id"]),
            path=str(raw["path"]),
            size=int(raw["size"]),
            mtime_ns=int(raw["mtime_ns"]),
            sha256=str(raw["sha256"]),
            categories=tuple(raw.get("categories") or (UNKNOWN,)),
            product=Product.from_json(raw.get("product")),
            source=source,
        )


def check_id(text: str) -> str:
    """An item id as given by a shop (CSV, admin API, command line): 1 to MAX_ID_CHARS characters, no
    control characters, no surrounding spaces."""
    item_id = text.strip()
    if not item_id or len(item_id) > MAX_ID_CHARS:
        raise UserError(f"an item id must be 1 to {MAX_ID_CHARS} characters, got {item_id[:80]!r}")
    if any(unicodedata.category(c) == "Cc" for c in item_id):
        raise UserError(f"an item id must not hold control characters, got {item_id[:80]!r}")
    return item_id


def parse_price(text: str) -> str:
    """A price as the shop wrote it, checked: digits with an optional '.' and decimals (19.90)."""
    price = text.strip()
    if not _PRICE.fullmatch(price):
        raise UserError(f"unparsable price {price[:40]!r}; write digits with a '.' decimal point, e.g. 19.90")
    return price


def check_url(text: str) -> str:
    """A product page address: http or https, with a host, no spaces."""
    url = text.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.netloc
        or len(url) > MAX_URL_CHARS
        or any(c.isspace() or unicodedata.category(c) == "Cc" for c in url)
    ):
        raise UserError(f"the url must be an http:// or https:// address, got {url[:80]!r}")
    return url


def parse_categories(text: str) -> tuple[str, ...]:
    """`dress|shirt` -> ("dress", "shirt"); blank -> ()."""
    names = [part for part in text.split("|") if part.strip()]
    return tuple(sorted({check_name(name) for name in names}))


def parse_product(fields: Mapping[str, str]) -> Product:
    """A product from text fields: title, price, currency, url, and any other name an attribute. Blank
    values are absent. A UserError names the field that is wrong."""
    values: dict[str, str | None] = dict.fromkeys(PRODUCT_FIELDS)
    attributes = {}
    for name, raw in fields.items():
        value = raw.strip()
        if name in RESERVED_FIELDS or not value:
            continue
        if name == "price":
            values[name] = parse_price(value)
        elif name == "url":
            values[name] = check_url(value)
        elif name in ("title", "currency"):
            limit = MAX_TITLE_CHARS if name == "title" else MAX_CURRENCY_CHARS
            values[name] = _bounded(name, value, limit)
        else:
            attributes[_bounded("an attribute name", name.strip(), 100)] = _bounded(name, value, MAX_ATTRIBUTE_CHARS)
    return Product(**values, attributes=attributes)


def _bounded(name: str, value: str, limit: int) -> str:
    if not value or len(value) > limit:
        raise UserError(f"{name} must be 1 to {limit} characters, got {len(value)}")
    return value
