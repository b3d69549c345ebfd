"""An index opened for searching: manifest, vector store, and the id -> file table."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.backends import Backend, Hit, open_backend
from fashionrec.index.manifest import Item, Manifest, load_manifest


class Catalog:
    def __init__(self, index_dir: Path, manifest: Manifest, backend: Backend) -> None:
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.backend = backend
        self.items: dict[str, Item] = {item.id: item for item in manifest.items}
        self._by_sha: dict[str, list[str]] = {}
        for item in manifest.items:
            self._by_sha.setdefault(item.sha256, []).append(item.id)

    @classmethod
    def open(cls, index_dir: Path) -> Catalog:
        manifest = load_manifest(index_dir)
        backend = open_backend(manifest.backend, Path(index_dir), [item.id for item in manifest.items])
        return cls(index_dir, manifest, backend)

    def check_encoder(self, fingerprint: str, preprocess_key: str) -> None:
        """Vectors from different weights or preprocessing live in different spaces: refuse to mix them."""
        built = self.manifest.checkpoint
        if fingerprint != built["fingerprint"]:
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

    def search(self, queries: np.ndarray, k: int, exclude: Collection[str] = ()) -> list[list[Hit]]:
        return self.backend.search(queries, k, exclude)

    def path(self, item_id: str) -> Path:
        """The file of a catalog item; KeyError for any id not in the catalog."""
        return Path(self.manifest.images_root) / self.items[item_id].path

    def ids_with_content(self, sha256: str) -> list[str]:
        """Catalog items whose file has exactly these bytes (how an uploaded catalog image is recognised)."""
        return self._by_sha.get(sha256, [])

    def __len__(self) -> int:
        return len(self.items)

    def close(self) -> None:
        self.backend.close()
