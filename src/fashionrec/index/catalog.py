"""An index opened for searching: manifest, vector store, and the id -> file table."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.backends import Backend, Hit, open_backend
from fashionrec.index.encoder import Encoder, same_model
from fashionrec.index.manifest import Item, Manifest, load_manifest


class UnknownItem(UserError):
    """An item id the catalog does not hold: the server answers 404 rather than 400."""


class Catalog:
    def __init__(self, index_dir: Path, manifest: Manifest, backend: Backend) -> None:
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.backend = backend
        self.items: dict[str, Item] = {item.id: item for item in manifest.items}
        self._by_sha: dict[str, list[str]] = {}
        self._by_category: dict[str, list[Item]] = {}
        for item in manifest.items:
            self._by_sha.setdefault(item.sha256, []).append(item.id)
            for name in item.categories:
                self._by_category.setdefault(name, []).append(item)
        self._by_category = dict(sorted(self._by_category.items()))

    @classmethod
    def open(cls, index_dir: Path) -> Catalog:
        manifest = load_manifest(index_dir)
        ids, categories = [item.id for item in manifest.items], [item.categories for item in manifest.items]
        return cls(index_dir, manifest, open_backend(manifest.backend, Path(index_dir), ids, categories))

    def check_encoder(self, encoder: Encoder) -> None:
        """Vectors from different weights or preprocessing live in different spaces: refuse to mix them."""
        built = self.manifest.checkpoint
        fingerprint, preprocess_key = encoder.fingerprint, encoder.preprocess["key"]
        if not same_model(encoder, built["fingerprint"]):
            raise UserError(
                f"the index at {self.index_dir} was built with checkpoint {built['path']} "
                f"(fingerprint {built['fingerprint'][:12]}), not this one ({fingerprint[:12]}); "
                "query it with that checkpoint or rebuild it with `fashionrec index --rebuild`"
            )
        if preprocess_key != self.manifest.preprocess["key"]:
            raise UserError(
                f"the index at {self.index_dir} was built with other preprocessing "
                f"({self.manifest.preprocess['config']}); "
                "rebuild it with `fashionrec index --rebuild`"
            )

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        if category is not None:
            self.check_category(category)
        return self.backend.search(queries, k, exclude, category)

    def path(self, item_id: str) -> Path:
        """The file of a catalog item; KeyError for any id not in the catalog."""
        return Path(self.manifest.images_root) / self.items[item_id].path

    def item(self, item_id: str) -> Item:
        try:
            return self.items[item_id]
        except KeyError:
            raise UnknownItem(f"no catalog item with id {item_id[:200]!r}") from None

    def categories(self) -> dict[str, int]:
        """Category name -> number of items, by name."""
        return {name: len(items) for name, items in self._by_category.items()}

    def check_category(self, name: str) -> None:
        if name not in self._by_category:
            known = ", ".join(self._by_category) or "none"
            raise UserError(f"unknown category {name[:100]!r}; this catalog has: {known}")

    def page(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        """(items in the category or catalog, the `limit` of them from `offset` on, in id order)."""
        if category is not None:
            self.check_category(category)
        items = self.manifest.items if category is None else self._by_category[category]
        return len(items), items[offset : offset + limit]

    def ids_with_content(self, sha256: str) -> list[str]:
        """Catalog items whose file has exactly these bytes (how an uploaded catalog image is recognised)."""
        return self._by_sha.get(sha256, [])

    def __len__(self) -> int:
        return len(self.items)

    def close(self) -> None:
        self.backend.close()
