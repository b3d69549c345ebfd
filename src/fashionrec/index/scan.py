"""Find catalog images and give each a stable id."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fashionrec.data.images import IMAGE_EXTENSIONS
from fashionrec.errors import UserError
from fashionrec.paths import existing_folder


def scan_images(root: Path, skip: Path | None = None) -> dict[str, Path]:
    """id -> path for every image under `root`, sorted by id.

    The id is the path relative to `root` without its extension, so it survives re-indexing and a
    format change; two files that differ only in extension would share one and are refused. Hidden
    files and anything under `skip` (the index itself, when it lives inside the catalog) are ignored.
    """
    root = existing_folder(root, "images folder")
    skip = skip.resolve() if skip is not None else None
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or any(part.startswith(".") for part in rel.parts):
            continue
        if (skip is not None and path.resolve().is_relative_to(skip)) or not path.is_file():
            continue
        item_id = rel.with_suffix("").as_posix()
        if item_id in found:
            raise UserError(f"{found[item_id]} and {path} would both get the id {item_id!r}; rename one")
        found[item_id] = path
    return dict(sorted(found.items()))


def file_sha256(path: Path) -> str:
    """Content hash: tells a touched file from a changed one, and a catalog image among uploads."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
