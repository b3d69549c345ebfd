"""A folder catalog's table of contents: what it holds and what built it, as plain JSON with a digest, and
the content hashes that every file it names is checked against when read."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionrec.atomic import atomic_write_json
from fashionrec.errors import UserError
from fashionrec.index.items import Item
from fashionrec.index.store import CatalogDamaged, ModelInfo

MANIFEST = "manifest.json"
FORMAT = 2  # 2 adds the sha256 of every data file and the manifest's own digest; 1 is still read


@dataclass
class Manifest:
    checkpoint: dict[str, Any]  # {"fingerprint": ..., "path": ...}
    preprocess: dict[str, Any]  # {"key": ..., "config": {...}}
    dim: int
    images_root: str
    embeddings: str  # .npy file in the index dir, row i is items[i]
    backend: dict[str, Any]  # FAISS: its "file" and that file's "sha256"
    items: list[Item] = field(default_factory=list)
    embeddings_sha256: str | None = None  # None in a format-1 index: the hash prefix in the name is checked

    def model(self) -> ModelInfo:
        return ModelInfo(self.checkpoint["fingerprint"], self.checkpoint["path"], self.preprocess, self.dim)

    def to_json(self) -> dict[str, Any]:
        raw = {
            "format": FORMAT,
            "checkpoint": self.checkpoint,
            "preprocess": self.preprocess,
            "dim": self.dim,
            "images_root": self.images_root,
            "embeddings": self.embeddings,
            "embeddings_sha256": self.embeddings_sha256,
            "backend": self.backend,
            "items": [item.to_json() for item in self.items],
        }
        return {**raw, "digest": digest(raw)}

    def save(self, index_dir: Path) -> None:
        atomic_write_json(Path(index_dir) / MANIFEST, self.to_json())


def digest(raw: dict[str, Any]) -> str:
    """sha256 of the manifest's content in a canonical form (the key order and spacing of the file do not count)."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def token(index_dir: Path) -> str | None:
    """The identity of the manifest now on disk (None: there is none): an update renames a new file into
    place, so a changed identity means a new version. A stat, cheap enough to check before every request."""
    try:
        return _identity(os.stat(Path(index_dir) / MANIFEST))
    except FileNotFoundError:
        return None


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def read_manifest(index_dir: Path) -> tuple[Manifest, str]:
    """The manifest of `index_dir` and its `token` (of the very file read); UserError when there is none,
    CatalogDamaged when it fails its digest or cannot be parsed."""
    path = Path(index_dir) / MANIFEST
    try:
        with open(path, "rb") as f:
            identity, data = _identity(os.fstat(f.fileno())), f.read()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"no index at {index_dir} ({MANIFEST} missing); build one with `fashionrec index`") from None
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version, recorded = raw.pop("format", None), raw.pop("digest", None)
        if version == FORMAT and recorded != digest({"format": version, **raw}):
            raise ValueError("its digest does not match its content")
        if version not in (1, FORMAT):
            raise ValueError(f"format {version!r} is not 1 or {FORMAT}")
        raw["items"] = [Item.from_json(item) for item in raw["items"]]
        return Manifest(**raw), identity
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CatalogDamaged(f"{path} is damaged ({e})") from None


def load_manifest(index_dir: Path) -> Manifest:
    return read_manifest(index_dir)[0]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_name(prefix: str, data: bytes, suffix: str) -> tuple[str, str]:
    """(file name, sha256) of a content-addressed data file: `<prefix>-<16 hex>.<suffix>`."""
    sha = sha256_hex(data)
    return f"{prefix}-{sha[:16]}{suffix}", sha


def read_verified(path: Path, sha256: str) -> bytes:
    """The bytes of `path` if their sha256 is `sha256` (or starts with it: format-1 names hold 16 hex
    digits); CatalogDamaged, in one line, otherwise."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CatalogDamaged(f"{path} is missing") from None
    if not sha256_hex(data).startswith(sha256) or len(sha256) < 16:
        raise CatalogDamaged(f"{path} is damaged (its content does not match its sha256)")
    return data


def name_hash(name: str) -> str:
    """The hash prefix a content-addressed name holds (`embeddings-<16 hex>.npy`)."""
    return name.rsplit("-", 1)[-1].split(".", 1)[0]
