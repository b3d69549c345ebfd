"""A catalog kept in a folder: manifest.json (the commit point, with its own digest), content-addressed data
files checked against their sha256 whenever read, images added through the admin API or `fashionrec
catalog` (`images/<sha256>.<ext>`), and a vector index (a FAISS file, or a Qdrant collection).

Readers use one immutable `_Version` at a time and swap to a newer one when the manifest on disk changes;
a version that fails its checks is refused and the old one kept. Writers hold a lock file, so `fashionrec
index`, `fashionrec catalog` and servers never write at once, and write new files before the manifest.
"""

from __future__ import annotations

import fcntl
import io
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from fashionrec.atomic import atomic_write
from fashionrec.errors import UserError
from fashionrec.index.backends import Backend, Searcher, connect_backend, requested_location, same_location
from fashionrec.index.items import Item
from fashionrec.index.manifest import (
    MANIFEST,
    Manifest,
    content_name,
    name_hash,
    read_manifest,
    read_verified,
    token,
)
from fashionrec.index.store import (
    CatalogDamaged,
    CatalogState,
    ChangeSet,
    Hit,
    ModelInfo,
    StoreOptions,
    StoreUnavailable,
    UnknownItem,
    duplicate_item,
    no_image,
    unknown_item,
)

LOCK = ".write.lock"
UPLOADS = "images"  # images added item by item, kept by the catalog: images/<sha256>.<ext>
LOAD_TRIES = 3  # a version replaced while it is read is read again, the newer one
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Version:
    """One committed state of the folder, opened for reading; never changed, so readers need no lock."""

    manifest: Manifest
    token: str
    searcher: Searcher
    by_sha: dict[str, list[str]]
    by_category: dict[str, list[Item]]

    @classmethod
    def of(cls, manifest: Manifest, identity: str, searcher: Searcher) -> _Version:
        by_sha: dict[str, list[str]] = {}
        by_category: dict[str, list[Item]] = {}
        for item in manifest.items:
            by_sha.setdefault(item.sha256, []).append(item.id)
            for name in item.categories:
                by_category.setdefault(name, []).append(item)
        return cls(manifest, identity, searcher, by_sha, dict(sorted(by_category.items())))


class FolderStore:
    kind = "folder"

    def __init__(self, folder: Path, options: StoreOptions) -> None:
        self.folder = Path(folder)
        self.location = str(folder)
        self.options = options
        self._version: _Version | None = None
        self._backend: Backend | None = None
        self._lock = threading.Lock()  # one load or write at a time in this process
        self._refused: tuple[str | None, str] | None = None  # (manifest token, why) of a version not taken

    @classmethod
    def open(cls, location: str, options: StoreOptions, create: bool = False) -> FolderStore:
        """An index folder, checked and ready to search; with `create`, possibly empty (for a build), and
        only the backend the options ask for is reached (so wrong settings fail before a model loads)."""
        store = cls(Path(location), options)
        if not create:
            store._version = store._load()
        elif options.backend is not None:
            store._backend = connect_backend(requested_location(options), store.folder, options)
        return store

    # ---- reading ---------------------------------------------------------------------------------------

    def _current(self) -> _Version:
        if self._version is None:
            raise UserError(f"no index at {self.folder} ({MANIFEST} missing); build one with `fashionrec index`")
        return self._version

    def model(self) -> ModelInfo:
        return self._current().manifest.model()

    def version(self) -> str:
        return self._current().token

    def count(self) -> int:
        return len(self._current().manifest.items)

    def categories(self) -> dict[str, int]:
        return {name: len(items) for name, items in self._current().by_category.items()}

    def page(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]:
        version = self._current()
        items = version.manifest.items if category is None else version.by_category.get(category, [])
        return len(items), items[offset : offset + limit]

    def item(self, item_id: str) -> Item:
        item = self._current().searcher.get(item_id)
        if item is None:
            raise unknown_item(item_id)
        return item

    def ids_with_content(self, sha256: str) -> list[str]:
        return self._current().by_sha.get(sha256, [])

    def image(self, item: Item) -> bytes:
        path = self.image_path(item)
        if path is None:
            raise UnknownItem(no_image(item))
        if item.source == "upload":
            return read_verified(path, item.sha256)
        try:
            return path.read_bytes()
        except OSError:
            raise UnknownItem(f"the image of item {item.id!r} is no longer on disk") from None

    def image_path(self, item: Item) -> Path | None:
        """Under the images root (or `images/`) only: a record from elsewhere (a shared Qdrant collection)
        never names another file. None for an item without an image."""
        if not item.has_image:
            return None
        relative = PurePosixPath(item.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise UnknownItem(f"the image of item {item.id!r} is not under the catalog's images")
        if item.source == "upload":
            return self.folder / UPLOADS / relative
        return Path(self._current().manifest.images_root) / relative

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        return self._current().searcher.search(queries, k, exclude, category)

    def health(self) -> dict[str, Any]:
        version = self._current()
        version.searcher.health()
        problems = [self._refused[1]] if self._refused is not None else []
        return {"backend": version.manifest.backend["kind"], "items": len(version.manifest.items), "problems": problems}

    def refresh(self, accept: Callable[[ModelInfo], None] | None = None) -> None:
        """A stat of the manifest; a new one is loaded by the request that notices it (others go on with
        the version they have), and taken only if it passes every check and `accept`."""
        now = token(self.folder)
        if self._version is not None and now == self._version.token:
            return
        if self._refused is not None and self._refused[0] == now:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            now = token(self.folder)
            if self._version is not None and now == self._version.token:
                return
            try:
                version = self._load()
                if accept is not None:
                    accept(version.manifest.model())
            except StoreUnavailable:
                raise
            except UserError as e:
                self._refused = (now, f"a new version of the index was not taken: {e}")
                log.warning("%s", self._refused[1])
                return
            self._version, self._refused = version, None
        finally:
            self._lock.release()

    def _load(self) -> _Version:
        """The version on disk now, every file it names checked."""
        for _ in range(LOAD_TRIES):
            manifest, identity = read_manifest(self.folder)
            try:
                backend = self._backend if same_location(self._backend, manifest.backend) else None
                backend = backend or connect_backend(manifest.backend, self.folder, self.options)
                searcher = backend.searcher(manifest.backend, manifest.items)
            except CatalogDamaged:
                if token(self.folder) != identity:
                    continue  # a writer replaced it while it was read (and removed its files): read the new one
                raise
            self._backend = backend
            return _Version.of(manifest, identity, searcher)
        raise UserError(f"the index at {self.folder} kept changing while it was read; try again")

    # ---- writing ---------------------------------------------------------------------------------------

    def state(self) -> CatalogState | None:
        with self._lock:
            if token(self.folder) is None:
                return None
            manifest, _ = read_manifest(self.folder)
            notes, reusable = [], True
            try:
                _vectors(self.folder, manifest)
            except CatalogDamaged as e:
                notes.append(f"{e.problem}: every item is encoded again")
                reusable = False
            if "file" in manifest.backend:  # an index kept in a file of the folder
                try:
                    read_verified(self.folder / manifest.backend["file"], _file_hash(manifest.backend))
                except CatalogDamaged as e:
                    notes.append(f"{e.problem}: it is built again from the vectors")
            return CatalogState(manifest.model(), manifest.images_root, manifest.items, reusable, tuple(notes))

    def staged(self, fingerprint: str, preprocess_key: str) -> frozenset[str]:
        return frozenset()

    def stage(self, changes: ChangeSet) -> None:
        """A folder build writes its files at the end; a rerun encodes again (from the preprocessing cache)."""

    def apply(self, changes: ChangeSet) -> dict[str, Any]:
        """New data files first, then the manifest (the commit point), then the new version in use; an
        error before the manifest is written leaves the catalog as it was."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock, _write_lock(self.folder):
            base, trusted = self._base(changes.reset)
            items, fresh, uploads = _merge(base, changes)
            model = changes.model or (base.model() if base is not None else None)
            if model is None:
                raise ValueError("the first change of a catalog must name its model")
            vectors = np.empty((len(items), model.dim), np.float32)
            kept = [row for row, item in enumerate(items) if item.id not in fresh]
            if kept:
                old = _vectors(self.folder, base)
                vectors[kept] = old[_stored_rows(base, [items[row] for row in kept])]
            for row, item in enumerate(items):
                if item.id in fresh:
                    vectors[row] = fresh[item.id]
            for name, data in uploads.items():
                atomic_write(self.folder / UPLOADS / name, lambda f, data=data: f.write(data))

            backend, in_place = self._target(base, changes.reset)
            before = {} if base is None or not in_place else {item.id: item for item in base.items}
            after = {item.id for item in items}
            entry = backend.sync(
                items,
                vectors,
                changed=[item.id for item in items if item.id in fresh or before.get(item.id) != item],
                removed=[item_id for item_id in before if item_id not in after],
                reset=not in_place,
            )
            embeddings, embeddings_sha = _write_vectors(self.folder, vectors)
            manifest = Manifest(
                checkpoint={"fingerprint": model.fingerprint, "path": model.checkpoint},
                preprocess=model.preprocess,
                dim=model.dim,
                images_root=changes.images_root or (base.images_root if base is not None else ""),
                embeddings=embeddings,
                backend=entry,
                items=items,
                embeddings_sha256=embeddings_sha,
            )
            searcher = backend.searcher(entry, items)
            manifest.save(self.folder)
            self._version = _Version.of(manifest, token(self.folder), searcher)
            self._backend, self._refused = backend, None
            _remove_stale(self.folder, manifest, uploads_too=trusted)
            return entry

    def _base(self, reset: bool) -> tuple[Manifest | None, bool]:
        """The manifest a change applies to (the newest on disk), and whether it was readable. A reset may
        start over from a damaged one; nothing else may."""
        if token(self.folder) is None:
            return None, True
        try:
            return read_manifest(self.folder)[0], True
        except CatalogDamaged:
            if not reset:
                raise
            return None, False

    def _target(self, base: Manifest | None, reset: bool) -> tuple[Backend, bool]:
        """The backend to write (the one the options ask for, else the one the catalog has), and whether it
        holds the base version to update in place."""
        if self.options.backend is not None or base is None:
            location = requested_location(self.options)
        else:
            location = base.backend
        backend = self._backend if same_location(self._backend, location) else None
        backend = backend or connect_backend(location, self.folder, self.options)
        in_place = base is not None and not reset and same_location(backend, base.backend)
        return backend, in_place

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._version = self._backend = None


def _merge(base: Manifest | None, changes: ChangeSet) -> tuple[list[Item], dict[str, np.ndarray], dict[str, bytes]]:
    """(the new item table in id order, new vectors by id, upload bytes by file name)."""
    table = {} if base is None or changes.reset else {item.id: item for item in base.items}
    contents = {item.sha256 for item in table.values() if item.has_image}
    for item_id in changes.removals:
        if table.pop(item_id, None) is None:
            raise unknown_item(item_id)
    fresh, uploads = {}, {}
    for change in changes.upserts:
        item_id = change.item.id
        if change.must_exist is True and item_id not in table:
            raise unknown_item(item_id)
        if change.must_exist is False and item_id in table:
            raise duplicate_item(item_id)
        if change.vector is None and change.item.sha256 not in contents:
            raise ValueError(f"item {item_id!r}: its image is new to the catalog, so its change needs a vector")
        table[item_id] = change.item
        if change.vector is not None:
            fresh[item_id] = np.asarray(change.vector, np.float32)
        if change.image is not None:
            uploads[change.item.path] = change.image
    return sorted(table.values(), key=lambda item: item.id), fresh, uploads


def _stored_rows(base: Manifest, items: list[Item]) -> list[int]:
    """The stored vectors upserts without one keep: each item's own, or (new image content) that of an
    item with the same image."""
    by_id = {stored.id: row for row, stored in enumerate(base.items)}
    by_content = {stored.sha256: row for row, stored in enumerate(base.items) if stored.has_image}
    rows = []
    for item in items:
        row = by_id.get(item.id)
        rows.append(row if row is not None and base.items[row].sha256 == item.sha256 else by_content[item.sha256])
    return rows


def _vectors(folder: Path, manifest: Manifest) -> np.ndarray:
    """The manifest's embeddings, checked: the file's sha256, then the shape the manifest implies."""
    path = folder / manifest.embeddings
    data = read_verified(path, manifest.embeddings_sha256 or name_hash(manifest.embeddings))
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise CatalogDamaged(f"{path} is not a vector file ({e})") from None
    if vectors.shape != (len(manifest.items), manifest.dim) or vectors.dtype != np.float32:
        raise CatalogDamaged(
            f"{path} holds {vectors.dtype} {vectors.shape}, not {len(manifest.items)} x {manifest.dim}"
        )
    return vectors


def _write_vectors(folder: Path, vectors: np.ndarray) -> tuple[str, str]:
    """Content-addressed, so the manifest that names it is the commit point of a change."""
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    blob = buffer.getvalue()
    name, sha = content_name("embeddings", blob, ".npy")
    atomic_write(folder / name, lambda f: f.write(blob))
    return name, sha


def _file_hash(entry: dict[str, Any]) -> str:
    return entry.get("sha256") or name_hash(entry["file"])


def _remove_stale(folder: Path, manifest: Manifest, uploads_too: bool) -> None:
    """Files of earlier versions, now that the new manifest no longer names them, and the temp files of
    writes a killed process never finished (`fashionrec.atomic` names them `.<name>.<random>.tmp`).
    Uploaded images stay when the manifest that named them was damaged: nothing else knows of them."""
    keep = {manifest.embeddings, manifest.backend.get("file")}
    stale = ("embeddings-*.npy", "faiss-*.index", f".{MANIFEST}.*.tmp", ".embeddings-*.tmp", ".faiss-*.tmp")
    for pattern in stale:
        for path in folder.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
    if uploads_too and (folder / UPLOADS).is_dir():
        named = {item.path for item in manifest.items if item.source == "upload"}
        for path in (folder / UPLOADS).iterdir():
            if path.name not in named:
                path.unlink(missing_ok=True)


@contextmanager
def _write_lock(folder: Path) -> Iterator[None]:
    """Held by whoever writes the folder, in any process: changes are made one after another."""
    with open(folder / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
