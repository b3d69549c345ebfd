"""Changing a catalog one item at a time, for `fashionrec catalog` and the admin API: fields checked as
the products CSV's are, the image checked as an upload and encoded with the catalog's model (target
block), the change applied all or nothing. Every check runs before anything is written."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from fashionrec.errors import UserError
from fashionrec.index.categories import UNKNOWN
from fashionrec.index.images import DEFAULT_LIMITS, ImageLimits, decode_image, image_suffix
from fashionrec.index.items import Item, check_id, parse_categories, parse_product
from fashionrec.index.store import CatalogStore, ChangeSet, UnknownItem, Upsert, duplicate_item

EncodeImages = Callable[[Sequence[Image.Image]], np.ndarray]


class CatalogEditor:
    """`fields` are text: `id`, `category` (`|`-separated), `title`, `price`, `currency`, `url`, and any
    other name an attribute; in an update, a field given blank clears it. `encode` (the catalog's model)
    is needed only for new images."""

    def __init__(self, store: CatalogStore, encode: EncodeImages | None, limits: ImageLimits = DEFAULT_LIMITS) -> None:
        self.store = store
        self.encode = encode
        self.limits = limits

    def add(self, fields: Mapping[str, str], image: bytes) -> Item:
        """A new item (DuplicateItem when the id is taken)."""
        if not fields.get("id", "").strip():
            raise UserError("give the new item's id")
        item_id = check_id(fields["id"])
        self._check_new(item_id)
        categories = parse_categories(fields.get("category", "")) or (UNKNOWN,)
        product = parse_product(fields)
        item, vector = self._picture(item_id, image)
        item = replace(item, categories=categories, product=product)
        self.store.apply(ChangeSet([Upsert(item, vector, image, must_exist=False)]))
        return item

    def update(self, item_id: str, fields: Mapping[str, str], image: bytes | None = None) -> Item:
        """The item with the fields given replaced, and a new picture if `image` is given."""
        if "id" in fields and fields["id"].strip() != item_id:
            raise UserError("an item's id cannot change; remove it and add it under the new id")
        current = self.store.item(item_id)
        categories = current.categories
        if "category" in fields:
            categories = parse_categories(fields["category"]) or (UNKNOWN,)
        product = current.product.updated({k: v for k, v in fields.items() if k not in ("id", "category")})
        item, vector = (current, None) if image is None else self._picture(item_id, image)
        item = replace(item, categories=categories, product=product)
        self.store.apply(ChangeSet([Upsert(item, vector, image, must_exist=True)]))
        return item

    def remove(self, item_id: str) -> None:
        self.store.apply(ChangeSet(removals=[item_id]))

    def _check_new(self, item_id: str) -> None:
        """Before the image is decoded and encoded; `apply` checks again, under the store's write lock."""
        try:
            self.store.item(item_id)
        except UnknownItem:
            return
        raise duplicate_item(item_id)

    def _picture(self, item_id: str, data: bytes) -> tuple[Item, np.ndarray]:
        """The item record of an uploaded image (kept by the catalog as `<sha256>.<ext>`), and its vector."""
        picture = decode_image(data, self.limits)
        if self.encode is None:
            raise UserError("a new image needs the catalog's model to encode it (--checkpoint)")
        sha = hashlib.sha256(data).hexdigest()
        item = Item(item_id, f"{sha}{image_suffix(data)}", len(data), time.time_ns(), sha, source="upload")
        return item, self.encode([picture])[0]
