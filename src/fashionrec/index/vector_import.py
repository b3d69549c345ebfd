"""`fashionrec index --from-mongo-export`: a catalog made of vectors computed elsewhere (the original system's
MongoDB, read by `fashionrec.index.mongo_export`) instead of encoded here, pinned to the checkpoint that made
them, through the same `CatalogStore` interface as every build.

With an images folder, each item's file is found by its name, and the item is an ordinary folder item (shown,
usable as a reference, kept by later builds while its file is unchanged); without one, it is a "vector" item:
a result of uploaded photos only, shown without a picture."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from fashionrec.errors import UserError
from fashionrec.index import categories as category_sources
from fashionrec.index.build import (
    BuildReport,
    kept_changes,
    kept_items,
    load_encoder,
    model_info,
    read_state,
    report,
)
from fashionrec.index.encoder import Encoder
from fashionrec.index.items import Item, Product
from fashionrec.index.mongo_export import MongoExport, read_mongo_export
from fashionrec.index.registry import open_catalog
from fashionrec.index.scan import file_sha256
from fashionrec.index.store import ChangeSet, StoreOptions, Upsert, check_same_model
from fashionrec.options import DEFAULT_CACHE_DIR, DEFAULT_DEVICE
from fashionrec.paths import existing_folder


def import_catalog(
    checkpoint: Path,
    export: str | Path | MongoExport,
    out: str | Path,
    *,
    images: Path | None = None,
    options: StoreOptions | None = None,
    rebuild: bool = False,
    cache_dir: Path = Path(DEFAULT_CACHE_DIR),
    device: str = DEFAULT_DEVICE,
    encoder: Encoder | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
    products: Mapping[str, Product] | None = None,
    text_model: str | None = None,
    **preprocess: Any,
) -> BuildReport:
    """Make the catalog at `out` hold the export's items with their vectors (L2-normalised), recorded as the
    checkpoint's: its fingerprint, dimension and preprocessing (`preprocess`: crop=..., landmarks=...,
    yolo_weights=... override it, as for `build_index`), so queries are encoded as the catalog was.

    Every document is checked, and with `images` every file found, before the model loads; the vector length
    is checked against the checkpoint before anything is written. An existing catalog must be of the same
    model unless `rebuild`; the export replaces its folder and imported items; items added one by one are
    kept (an exported id that is one of theirs is left out, as a build leaves out such a file). `categories`
    and `products` label items as for `build_index`; `encoder` stands in for loading `checkpoint`."""
    exported = export if isinstance(export, MongoExport) else read_mongo_export(export)
    given, products = categories or {}, products or {}
    store = open_catalog(out, options or StoreOptions(), create=True)
    try:
        located = _located(exported, Path(images)) if images is not None else {}
        state, notes = read_state(store, "the export")
        if encoder is None:
            encoder = load_encoder(checkpoint, cache_dir, device, text_model, preprocess)
        exported.check_dim(encoder.dim, checkpoint)
        if state is not None and not rebuild:
            check_same_model(state.model, encoder, store.location)
        previous = {} if state is None else {item.id: item for item in state.items}
        reset = rebuild or state is None or not state.vectors_reusable
        kept = kept_items(previous, ("upload",), (), given, products, reset, out)
        taken = {item.id for item in kept}
        items = _items(exported, located, {} if rebuild else previous, given, products)
        upserts = [
            Upsert(item, vector) for item, vector in zip(items, exported.vectors, strict=True) if item.id not in taken
        ]
        imported = [change.item for change in upserts]
        upserts += kept_changes(kept, previous, store, encoder, reset)
        ids = {item.id for item in items}
        removals = [] if reset else [i for i, item in previous.items() if item.source != "upload" and i not in ids]
        root = str(Path(images).resolve()) if images is not None else None
        changes = ChangeSet(upserts, removals, model=model_info(encoder, checkpoint), images_root=root, reset=reset)
        entry = store.apply(changes)
    finally:
        store.close()
    skipped = [item for item in exported.items if item.id in taken]
    notes += [f"{item.describe()} has the id of an item added one by one, which is kept" for item in skipped]
    if images is None:
        notes.append(
            f"{len(imported)} items have no image (no --images): they are found by uploaded photos and shown "
            "without pictures"
        )
    return report(imported + kept, changes, len(removals), entry, notes, imported=len(imported))


def _items(
    exported: MongoExport,
    located: Mapping[str, tuple[int, int, str]],
    recorded: Mapping[str, Item],
    given: Mapping[str, tuple[str, ...]],
    products: Mapping[str, Product],
) -> list[Item]:
    """The export's items: folder items where their files were found, else items known by their vectors
    alone; labelled as a build labels a folder's files."""
    ids = [item.id for item in exported.items]
    labels = category_sources.assign(ids, given, {i: item.categories for i, item in recorded.items()})
    items = []
    for item_id, name in zip(ids, (item.name for item in exported.items), strict=True):
        before = recorded.get(item_id)
        product = products.get(item_id, before.product if before is not None else Product())
        if item_id in located:
            size, mtime_ns, sha256 = located[item_id]
            items.append(Item(item_id, name, size, mtime_ns, sha256, labels[item_id], product))
        else:
            items.append(Item(item_id, name, 0, 0, "", labels[item_id], product, source="vector"))
    return items


def _located(exported: MongoExport, images: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of each item's file, found by its name under `images`; a name without a file
    is a UserError naming its document."""
    root = existing_folder(images, "images folder")
    found = {}
    for item in exported.items:
        path = root / PurePosixPath(item.name)
        if not path.is_file():
            problem = "is a folder, not an image" if path.is_dir() else "does not exist"
            raise UserError(f"{exported.path}, {item.describe()}: {path} {problem}")
        try:
            stat = path.stat()
            found[item.id] = (stat.st_size, stat.st_mtime_ns, file_sha256(path))
        except OSError as e:
            raise UserError(f"{exported.path}, {item.describe()}: cannot read {path} ({e.strerror})") from None
    return found
