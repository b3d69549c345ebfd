"""`fashionrec index`: bring an index up to date with a folder of images, encoding only what changed."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.atomic import atomic_write
from fashionrec.errors import UserError
from fashionrec.index import categories as category_sources
from fashionrec.index.backends import new_backend
from fashionrec.index.encoder import Encoder, same_model
from fashionrec.index.manifest import MANIFEST, Item, Manifest, load_manifest
from fashionrec.index.scan import file_sha256, scan_images
from fashionrec.options import DEFAULT_CACHE_DIR, DEFAULT_DEVICE


@dataclass(frozen=True)
class BuildReport:
    items: int
    encoded: int
    reused: int
    removed: int
    backend: dict[str, Any]
    categories: dict[str, int] = field(default_factory=dict)  # items per category

    def summary(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.backend.items() if k not in ("kind", "file"))
        counts = ", ".join(f"{name} {n}" for name, n in self.categories.items())
        return (
            f"{self.items} items ({self.encoded} encoded, {self.reused} unchanged, "
            f"{self.removed} removed); backend {self.backend['kind']}{extra}; categories: {counts}"
        )


def build_index(
    checkpoint: Path,
    images: Path,
    out: Path,
    *,
    backend: str = "faiss",
    url: str | None = None,
    collection: str | None = None,
    approx_threshold: int | None = None,
    rebuild: bool = False,
    batch_size: int = 64,
    cache_dir: Path = Path(DEFAULT_CACHE_DIR),
    device: str = DEFAULT_DEVICE,
    encoder: Encoder | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
    text_model: str | None = None,
    **preprocess: Any,
) -> BuildReport:
    """Index every image under `images` into `out` with the checkpoint's target block.

    `categories` (id -> category names, see `fashionrec.index.categories`) labels items; those it does not
    name keep the categories the index had for them, else get their top folder's name, else "unknown".

    A second run re-encodes only new or changed files and drops removed ones. FAISS indexes of more than
    `approx_threshold` items (default 100,000) are IVF, tuned to recall@10 >= 0.95. `preprocess` (crop=...,
    landmarks=..., yolo_weights=...) overrides what the checkpoint was trained with. `encoder` stands in
    for loading `checkpoint` (tests, or a caller that has the model loaded); `text_model` is where
    bert-base-uncased's vocabulary is, for the original system's checkpoints.
    """
    images, out = Path(images), Path(out)
    # The catalog, the index and the backend settings are checked before the model loads.
    paths = scan_images(images, skip=out)
    if not paths:
        raise UserError(f"no images (.jpg, .jpeg, .png, .webp) under {images}")
    old = None if rebuild or not (out / MANIFEST).exists() else load_manifest(out)
    store = new_backend(backend, out, url=url, collection=collection, approx_threshold=approx_threshold)
    try:
        if encoder is None:
            from fashionrec.index.model_encoder import ModelEncoder

            encoder = ModelEncoder.load(Path(checkpoint), Path(cache_dir), device, text_model, **preprocess)
        if old is not None:
            _check_same_model(old, encoder, out)
        items, reuse = _plan(paths, images, old, categories or {})
        todo = {item.id: paths[item.id] for item in items if item.id not in reuse}
        vectors = _assemble(items, reuse, old, out, todo, encoder.encode_catalog(todo, batch_size))
        removed = [] if old is None else sorted({i.id for i in old.items} - set(paths))
        before = {} if old is None else {i.id: i.categories for i in old.items}
        changed = [item.id for item in items if item.id in todo or before.get(item.id) != item.categories]
        in_place = old is not None and all(old.backend.get(k) == v for k, v in store.location.items())
        entry = store.sync(
            [item.id for item in items],
            vectors,
            changed=changed,
            removed=removed,
            reset=not in_place,
            categories=[item.categories for item in items],
        )
    finally:
        store.close()
    embeddings = _write_embeddings(out, vectors)
    Manifest(
        checkpoint={"fingerprint": encoder.fingerprint, "path": str(Path(checkpoint).resolve())},
        preprocess=encoder.preprocess,
        dim=int(vectors.shape[1]),
        images_root=str(images.resolve()),
        embeddings=embeddings,
        backend=entry,
        items=items,
    ).save(out)
    _remove_stale(out, {embeddings, entry.get("file")})
    counts = Counter(name for item in items for name in item.categories)
    return BuildReport(len(items), len(todo), len(reuse), len(removed), entry, dict(sorted(counts.items())))


def _check_same_model(old: Manifest, encoder: Encoder, out: Path) -> None:
    """An update must not mix vectors of two models in one index."""
    if not same_model(encoder, old.checkpoint["fingerprint"]) or old.preprocess["key"] != encoder.preprocess["key"]:
        raise UserError(
            f"{out} was built with another checkpoint or preprocessing "
            f"({old.checkpoint['path']}, {old.preprocess['config']}); "
            "pass --rebuild to re-encode every image"
        )


def _plan(
    paths: dict[str, Path], images: Path, old: Manifest | None, given: Mapping[str, tuple[str, ...]]
) -> tuple[list[Item], dict[str, int]]:
    """The new item table, and for each item whose file has not changed its row in the old embeddings.

    Size and mtime vouch for a file only under the same root and path; otherwise, or when they differ,
    the content hash decides, so a touched or moved-back file is not encoded again."""
    previous = {} if old is None else {item.id: (item, row) for row, item in enumerate(old.items)}
    labels = category_sources.assign(paths, given, {i: item.categories for i, (item, _) in previous.items()})
    same_root = old is not None and old.images_root == str(images.resolve())
    items, reuse = [], {}
    for item_id, path in paths.items():
        stat, rel = path.stat(), path.relative_to(images).as_posix()
        before, row = previous.get(item_id, (None, -1))
        unchanged = (
            before is not None
            and same_root
            and (before.path, before.size, before.mtime_ns) == (rel, stat.st_size, stat.st_mtime_ns)
        )
        sha = before.sha256 if unchanged else file_sha256(path)
        items.append(Item(item_id, rel, stat.st_size, stat.st_mtime_ns, sha, labels[item_id]))
        if before is not None and before.sha256 == sha:
            reuse[item_id] = row
    return items, reuse


def _assemble(
    items: list[Item], reuse: dict[str, int], old: Manifest | None, out: Path, todo: dict[str, Path], fresh: np.ndarray
) -> np.ndarray:
    """Rows in item order: reused rows copied from the old embeddings, the rest from `fresh`."""
    dim = fresh.shape[1] if old is None else old.dim
    vectors = np.empty((len(items), dim), np.float32)
    position = {item.id: row for row, item in enumerate(items)}
    if reuse:
        old_vectors = np.load(out / old.embeddings, mmap_mode="r", allow_pickle=False)
        vectors[[position[i] for i in reuse]] = old_vectors[list(reuse.values())]
    if todo:
        vectors[[position[i] for i in todo]] = fresh
    return vectors


def _write_embeddings(out: Path, vectors: np.ndarray) -> str:
    """Content-addressed, so the manifest that names it is the commit point of a build."""
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    blob = buffer.getvalue()
    name = f"embeddings-{hashlib.sha256(blob).hexdigest()[:16]}.npy"
    atomic_write(out / name, lambda f: f.write(blob))
    return name


def _remove_stale(out: Path, keep: set[str | None]) -> None:
    """Files of earlier builds, now that the new manifest no longer names them, and the temp files of
    writes a killed build never finished (`fashionrec.atomic` names them `.<name>.<random>.tmp`)."""
    stale = ("embeddings-*.npy", "faiss-*.index", f".{MANIFEST}.*.tmp", ".embeddings-*.tmp", ".faiss-*.tmp")
    for pattern in stale:
        for path in out.glob(pattern):
            if path.name not in keep:
                path.unlink()
