"""`fashionrec index`: bring a catalog up to date with a folder of images, encoding only what changed.

The plan (which files are new, changed or gone, each item's categories and product details) is the same
for every store; the store applies it as one change (`CatalogStore.apply`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index import categories as category_sources
from fashionrec.index.encoder import Encoder
from fashionrec.index.images import decode_image
from fashionrec.index.items import Item, Product
from fashionrec.index.registry import local_folder, open_catalog
from fashionrec.index.scan import file_sha256, scan_images
from fashionrec.index.store import (
    CatalogDamaged,
    CatalogState,
    CatalogStore,
    ChangeSet,
    ModelInfo,
    StoreOptions,
    Upsert,
    check_same_model,
)
from fashionrec.options import DEFAULT_CACHE_DIR, DEFAULT_DEVICE

SUMMARY_HIDDEN = ("kind", "file", "sha256", "approx_threshold")  # backend entry keys left out of the summary
# Images encoded at a time, each batch then staged by stores that keep unfinished builds' vectors: a build
# killed half-way loses one batch of encoding at most.
STAGE_SIZE = 512


@dataclass(frozen=True)
class BuildReport:
    items: int
    encoded: int
    reused: int
    removed: int
    backend: dict[str, Any]
    categories: dict[str, int] = field(default_factory=dict)  # items per category
    notes: tuple[str, ...] = ()  # damage found and repaired, one line each
    imported: int = 0  # items whose vectors came with them (`fashionrec index --from-mongo-export`)

    def summary(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.backend.items() if k not in SUMMARY_HIDDEN)
        counts = ", ".join(f"{name} {n}" for name, n in self.categories.items())
        imported = f"{self.imported} imported, " if self.imported else ""
        return (
            f"{self.items} items ({imported}{self.encoded} encoded, {self.reused} unchanged, "
            f"{self.removed} removed); backend {self.backend['kind']}{extra}; categories: {counts}"
        )


@dataclass
class _Plan:
    folder_items: list[Item]  # every image under the folder, in id order
    encode: dict[str, Path]  # folder items whose vectors are computed again
    staged: set[str]  # folder items whose vectors a killed build staged: not encoded again
    kept: list[Item]  # items the catalog keeps itself (see `kept_items`), with this build's labels
    reset: bool  # no stored vector is kept: every item is encoded
    removals: list[str]


def build_index(
    checkpoint: Path,
    images: Path,
    out: str | Path,
    *,
    backend: str | None = None,
    url: str | None = None,
    collection: str | None = None,
    approx_threshold: int | None = None,
    qdrant_api_key: str | None = None,
    catalog: str | None = None,
    rebuild: bool = False,
    batch_size: int = 64,
    cache_dir: Path = Path(DEFAULT_CACHE_DIR),
    device: str = DEFAULT_DEVICE,
    encoder: Encoder | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
    products: Mapping[str, Product] | None = None,
    text_model: str | None = None,
    **preprocess: Any,
) -> BuildReport:
    """Index every image under `images` into the catalog at `out` (a folder, or a registered URL) with the
    checkpoint's target block.

    `categories` (id -> names, see `fashionrec.index.categories`) and `products` (id -> details, see
    `fashionrec.index.products`) label items; those they do not name keep what the catalog recorded for
    them (categories: else their top folder's name, else "unknown"). Items added one by one (`fashionrec
    catalog add`, the admin API) are kept.

    A second run re-encodes only new or changed files and drops removed ones; damaged stored vectors are
    encoded again, a damaged vector index rebuilt from them. FAISS indexes of more than `approx_threshold`
    items (default 100,000) are IVF, tuned to recall@10 >= 0.95 (PostgreSQL catalogs: HNSW above it,
    default 10,000). `backend` (with `url`, `collection`) chooses the vector index of a folder catalog
    (default: the one it has, else FAISS); `catalog` names a catalog in a database. `preprocess`
    (crop=..., landmarks=..., yolo_weights=...) overrides what the checkpoint was trained with. `encoder`
    stands in for loading `checkpoint`; `text_model` is where bert-base-uncased's vocabulary is, for the
    original system's checkpoints.
    """
    images = Path(images)
    options = StoreOptions(backend, url, collection, approx_threshold, qdrant_api_key, catalog)
    # Opened and scanned first, so bad settings and paths fail before the model loads.
    store = open_catalog(out, options, create=True)
    try:
        paths = scan_images(images, skip=local_folder(out))
        if not paths:
            raise UserError(f"no images (.jpg, .jpeg, .png, .webp) under {images}")
        state, notes = read_state(store, "the images")
        if encoder is None:
            encoder = load_encoder(checkpoint, cache_dir, device, text_model, preprocess)
        if state is not None and not rebuild:
            check_same_model(state.model, encoder, store.location)
        staged = store.staged(encoder.fingerprint, encoder.preprocess["key"])
        plan = _plan(paths, images, state, rebuild, categories or {}, products or {}, out, staged)
        changes = _changes(plan, state, store, encoder, batch_size, Path(checkpoint), images)
        entry = store.apply(changes)
    finally:
        store.close()
    return report(plan.folder_items + plan.kept, changes, len(plan.removals), entry, notes)


def read_state(store: CatalogStore, source: str) -> tuple[CatalogState | None, list[str]]:
    """What the catalog holds (None: nothing, or nothing readable), and the damage found, one line each
    (`source`: what the catalog is built again from, for them)."""
    try:
        state = store.state()
    except CatalogDamaged as e:
        return None, [f"{e.problem}: the catalog is built again from {source}"]
    return state, list(state.notes) if state is not None else []


def load_encoder(
    checkpoint: Path, cache_dir: Path, device: str, text_model: str | None, preprocess: Mapping[str, Any]
) -> Encoder:
    """The checkpoint's target block with the preprocessing it records, unless `preprocess` overrides it."""
    from fashionrec.index.model_encoder import ModelEncoder

    return ModelEncoder.load(Path(checkpoint), Path(cache_dir), device, text_model, **preprocess)


def report(
    items: Sequence[Item],
    changes: ChangeSet,
    removed: int,
    entry: dict[str, Any],
    notes: Sequence[str],
    imported: int = 0,
) -> BuildReport:
    """The summary of an applied change whose new item table is `items`."""
    encoded = sum(change.vector is not None for change in changes.upserts) - imported
    counts = Counter(name for item in items for name in item.categories)
    return BuildReport(
        len(items),
        encoded,
        len(items) - encoded - imported,
        removed,
        entry,
        dict(sorted(counts.items())),
        tuple(notes),
        imported,
    )


def _plan(
    paths: dict[str, Path],
    images: Path,
    state: CatalogState | None,
    rebuild: bool,
    given: Mapping[str, tuple[str, ...]],
    products: Mapping[str, Product],
    out: str | Path,
    staged: frozenset[str] = frozenset(),
) -> _Plan:
    """The new item table, and what must be encoded: content the catalog has no vector for (not even one a
    killed build staged: `staged`).

    Size and mtime vouch for a file only under the same root and path; otherwise, or when they differ,
    the content hash decides, so a touched, renamed or moved-back file is not encoded again. A rebuild forgets
    what earlier builds recorded about folder items; items added one by one keep theirs. A file replaces an
    item imported without an image (it gains its picture), never one added one by one."""
    previous = {} if state is None else {item.id: item for item in state.items}
    recorded = {} if rebuild else previous
    labels = category_sources.assign(paths, given, {i: item.categories for i, item in recorded.items()})
    same_root = state is not None and state.images_root == str(images.resolve())
    reuse = state is not None and state.vectors_reusable and not rebuild
    # Image contents with a vector in the catalog (a vector item's "" is no image content).
    stored = {item.sha256 for item in previous.values() if item.has_image} if reuse else set()
    folder_items, encode, from_stage = [], {}, set()
    for item_id, path in paths.items():
        before = previous.get(item_id)
        if before is not None and before.source == "upload":
            continue  # added through the catalog itself, which keeps its image: the file does not replace it
        stat, rel = path.stat(), path.relative_to(images).as_posix()
        unchanged = (
            before is not None
            and same_root
            and (before.path, before.size, before.mtime_ns) == (rel, stat.st_size, stat.st_mtime_ns)
        )
        sha = before.sha256 if unchanged else file_sha256(path)
        kept = recorded.get(item_id)
        product = products.get(item_id, kept.product if kept is not None else Product())
        folder_items.append(Item(item_id, rel, stat.st_size, stat.st_mtime_ns, sha, labels[item_id], product))
        if sha in stored:  # unchanged, or moved: the vector of its content is kept
            continue
        if sha in staged:
            from_stage.add(item_id)
        else:
            encode[item_id] = path
    kept = kept_items(previous, ("upload", "vector"), paths, given, products, not reuse, out)
    removals = [i for i, item in previous.items() if item.source == "folder" and i not in paths]
    return _Plan(folder_items, encode, from_stage, kept, not reuse, removals)


def kept_items(
    previous: Mapping[str, Item],
    sources: Collection[str],
    replaced: Collection[str],
    given: Mapping[str, tuple[str, ...]],
    products: Mapping[str, Product],
    reset: bool,
    out: str | Path,
) -> list[Item]:
    """Items of `sources` the catalog keeps through a build (those added one by one, whose image it keeps,
    and those imported without an image), with this build's categories and product details; a "vector"
    item whose id is in `replaced` is left out. When the build encodes every item (`reset`), an item
    without an image cannot be encoded: a UserError, before anything is encoded."""
    kept = [
        replace(item, categories=given.get(item.id, item.categories), product=products.get(item.id, item.product))
        for item in previous.values()
        if item.source in sources and (item.source == "upload" or item.id not in replaced)
    ]
    imageless = [item.id for item in kept if not item.has_image]
    if reset and imageless:
        raise UserError(
            f"the catalog at {out} holds {len(imageless)} items imported without images (e.g. {imageless[0]!r}), "
            "and this build encodes every item again (--rebuild, or stored vectors that failed their check): "
            "import them again with `fashionrec index --from-mongo-export FILE --images FOLDER`, or build into "
            "another index"
        )
    return kept


def kept_changes(
    kept: Sequence[Item], previous: Mapping[str, Item], store: CatalogStore, encoder: Encoder, reset: bool
) -> list[Upsert]:
    """The upserts of the kept items: when `reset`, each with a new vector encoded from the image the catalog
    keeps; otherwise only those whose labels changed, keeping their vectors."""
    if not reset:
        return [Upsert(item) for item in kept if previous.get(item.id) != item]
    if not kept:
        return []
    vectors = encoder.encode_images([decode_image(store.image(item)) for item in kept])
    return [Upsert(item, vector) for item, vector in zip(kept, vectors, strict=True)]


def _changes(
    plan: _Plan,
    state: CatalogState | None,
    store: CatalogStore,
    encoder: Encoder,
    batch_size: int,
    checkpoint: Path,
    images: Path,
) -> ChangeSet:
    """The plan as one change: new vectors where encoded (or staged), field changes where only labels changed."""
    model, root = model_info(encoder, checkpoint), str(images.resolve())
    vectors = _encode_and_stage(plan, store, encoder, batch_size, model, root)
    previous = {} if state is None else {item.id: item for item in state.items}
    upserts = [
        Upsert(item, vectors.get(item.id))
        for item in plan.folder_items
        if item.id in vectors or item.id in plan.staged or previous.get(item.id) != item
    ]
    upserts += kept_changes(plan.kept, previous, store, encoder, plan.reset)
    removals = [] if plan.reset else plan.removals
    return ChangeSet(upserts, removals, model=model, images_root=root, reset=plan.reset)


def _encode_and_stage(
    plan: _Plan, store: CatalogStore, encoder: Encoder, batch_size: int, model: ModelInfo, root: str
) -> dict[str, np.ndarray]:
    """The vectors of `plan.encode`, STAGE_SIZE images at a time, each batch handed to the store to stage."""
    items = {item.id: item for item in plan.folder_items}
    ids, vectors = list(plan.encode), {}
    for start in range(0, len(ids), STAGE_SIZE):
        chunk = ids[start : start + STAGE_SIZE]
        batch = dict(zip(chunk, encoder.encode_catalog({i: plan.encode[i] for i in chunk}, batch_size), strict=True))
        store.stage(ChangeSet([Upsert(items[i], v) for i, v in batch.items()], model=model, images_root=root))
        vectors.update(batch)
    return vectors


def model_info(encoder: Encoder, checkpoint: Path) -> ModelInfo:
    """What a catalog records of the model its vectors come from."""
    return ModelInfo(encoder.fingerprint, str(Path(checkpoint).resolve()), encoder.preprocess, encoder.dim)
