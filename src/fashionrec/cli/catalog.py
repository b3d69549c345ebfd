"""`fashionrec catalog add|update|remove`: change a catalog one item at a time, as the admin API does, with
the same checks; servers of the catalog take the change up on their next request."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fashionrec import options as opt
from fashionrec.cli.index import catalog_location, store_options

if TYPE_CHECKING:
    from fashionrec.index.edit import EncodeImages
    from fashionrec.index.store import CatalogStore


def attribute(text: str) -> tuple[str, str]:
    """KEY=VALUE, for a product detail of its own (material=cotton)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key.strip() in ("id", "category", "title", "price", "currency", "url"):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a key of its own, got {text[:80]!r}")
    return key.strip(), value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("catalog", help="add, change or remove one catalog item (no full `index` run)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an item; its image is encoded with the catalog's model")
    update = actions.add_parser("update", help="change an item's fields, or its image (needs --checkpoint)")
    remove = actions.add_parser("remove", help="remove an item")
    for parser in (add, update, remove):
        opt.add_options(parser, opt.INDEX, opt.CATALOG_NAME, opt.DATABASE_DIR)
        parser.add_argument("--id", required=True, help="the item's id")
        opt.CHECKPOINT.with_help("the checkpoint the index was built with").add_to(parser, required=parser is add)
        opt.add_options(parser, opt.DEVICE, opt.VOCAB, opt.QDRANT_API_KEY_FILE)
        parser.set_defaults(func=run_catalog)
    add.add_argument("--image", required=True, type=opt.readable_file, help="the item's picture (JPEG, PNG, WebP)")
    update.add_argument("--image", type=opt.readable_file, help="a new picture (JPEG, PNG, WebP)")
    for parser in (add, update):
        parser.add_argument("--category", action="append", help="a category (repeat for several)")
        parser.add_argument("--title", help="product name (update: '' clears it, as for every field)")
        parser.add_argument("--price", type=opt.price, help="digits with a '.' decimal point, e.g. 19.90")
        parser.add_argument("--currency", help="e.g. EUR")
        parser.add_argument("--url", type=opt.product_url, help="the product page, http(s)://")
        parser.add_argument(
            "--attribute", action="append", type=attribute, metavar="KEY=VALUE", help="another detail (repeatable)"
        )


def run_catalog(args: argparse.Namespace) -> int:
    from fashionrec.index.edit import CatalogEditor
    from fashionrec.index.registry import open_catalog

    image = None if getattr(args, "image", None) is None else args.image.read_bytes()
    options = store_options(args)
    store = open_catalog(catalog_location(args), options)
    try:
        editor = CatalogEditor(store, _encoder(args, store) if args.checkpoint is not None else None)
        if args.action == "remove":
            editor.remove(args.id)
            done = "removed"
        elif args.action == "add":
            editor.add({"id": args.id, **_fields(args)}, image)
            done = "added"
        else:
            editor.update(args.id, _fields(args), image)
            done = "updated"
        print(f"{done} {args.id} in {store.location} ({store.count()} items)")
    finally:
        store.close()
    return 0


def _fields(args: argparse.Namespace) -> dict[str, str]:
    """The fields given on the command line, as the admin API takes them."""
    fields = {name: getattr(args, name) for name in ("title", "price", "currency", "url")}
    fields["category"] = None if args.category is None else "|".join(args.category)
    fields.update(args.attribute or [])
    return {name: value for name, value in fields.items() if value is not None}


def _encoder(args: argparse.Namespace, store: CatalogStore) -> EncodeImages:
    """The catalog's model, checked against it, for a new image."""
    from fashionrec.index.model_encoder import ModelEncoder
    from fashionrec.index.store import check_encoder

    encoder = ModelEncoder.for_catalog(
        args.checkpoint, store.model().preprocess["config"], args.device, args.text_model
    )
    check_encoder(store.model(), encoder, store.location)
    return encoder.encode_images
