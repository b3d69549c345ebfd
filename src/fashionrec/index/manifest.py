"""The index's table of contents: what it holds and what built it, as plain JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fashionrec.atomic import atomic_write_json
from fashionrec.errors import UserError
from fashionrec.index.categories import UNKNOWN

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Item:
    """One catalog image; size/mtime_ns spot unchanged files cheaply, sha256 settles the rest."""

    id: str
    path: str  # relative to Manifest.images_root, POSIX separators
    size: int
    mtime_ns: int
    sha256: str
    categories: tuple[str, ...] = (UNKNOWN,)  # indexes built before categories existed load as unknown


@dataclass
class Manifest:
    checkpoint: dict[str, Any]  # {"fingerprint": ..., "path": ...}
    preprocess: dict[str, Any]  # {"key": ..., "config": {...}}
    dim: int
    images_root: str
    embeddings: str  # .npy file in the index dir, row i is items[i]
    backend: dict[str, Any]
    items: list[Item] = field(default_factory=list)

    def save(self, index_dir: Path) -> None:
        atomic_write_json(Path(index_dir) / MANIFEST, {"format": FORMAT, **asdict(self)})


def load_manifest(index_dir: Path) -> Manifest:
    """The manifest of `index_dir`, or a UserError when there is no readable index there."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no index at {index_dir} ({MANIFEST} missing); build one with `fashionrec index`")
    try:
        raw = json.loads(path.read_text())
        version = raw.pop("format", None)
        if version != FORMAT:
            raise ValueError(f"format {version} is not {FORMAT}")
        raw["items"] = [
            Item(**{**item, "categories": tuple(item.get("categories", (UNKNOWN,)))}) for item in raw["items"]
        ]
        return Manifest(**raw)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a valid index manifest ({e})") from e
