"""`fashionrec index`, `recommend` and `serve`: build a catalog index, query it, serve it over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionrec import options as opt
from fashionrec.errors import UserError

if TYPE_CHECKING:
    from fashionrec.index.store import StoreOptions

QDRANT_KEY_ENV = "QDRANT_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index", help="encode a folder of catalog images into a search index, or import vectors encoded elsewhere"
    )
    opt.CHECKPOINT.with_help("training checkpoint or model directory").add_to(p, required=True)
    # Required unless --from-mongo-export is given (checked first thing in run_index).
    opt.IMAGES.with_help(
        "catalog folder (jpg/jpeg/png/webp, recursive); with --from-mongo-export, optional: the folder the "
        "exported names are relative to"
    ).add_to(p)
    opt.option_group(p, "data").add_argument(
        "--from-mongo-export",
        type=opt.existing_file("mongoexport file"),
        metavar="FILE",
        help="import the original system's catalog vectors instead of encoding images: a mongoexport file (JSON "
        "lines or array) of {name, features} documents made with the --checkpoint model",
    )
    p.add_argument(
        "--out", type=opt.catalog_location(opt.folder_to_write("index folder")), metavar="INDEX",
        help=f"index folder (created or updated), or a catalog database URL (postgresql://...; default: "
        f"--database-dir, else ${opt.DATABASE_URL_ENV})",
    )  # fmt: skip
    opt.add_options(p, opt.CATALOG_NAME, opt.DATABASE_DIR)
    p.add_argument(
        "--backend",
        choices=("faiss", "qdrant"),
        help="vector store of the index folder (default: the one it has, else faiss)",
    )
    p.add_argument("--url", help="qdrant: http(s)://host:port, or a folder for qdrant-client's local mode")
    p.add_argument("--collection", help="qdrant collection name")
    p.add_argument(
        "--approx-threshold",
        type=opt.non_negative_int,
        metavar="N",
        help="catalogs of more than N items get an approximate index: faiss IVF (default: 100000), "
        "postgres HNSW (default: 10000, or what the catalog has)",
    )
    p.add_argument("--rebuild", action="store_true", help="re-encode everything (e.g. for a new checkpoint)")
    opt.add_options(p, opt.BATCH, opt.CACHE_DIR, opt.DEVICE)
    # Preprocessing: the checkpoint's own unless overridden here.
    opt.add_options(p, opt.CROP, opt.LANDMARKS, opt.YOLO_WEIGHTS, opt.VOCAB, opt.QDRANT_API_KEY_FILE)
    p.add_argument(
        "--path-file",
        type=opt.existing_folder("annotations folder"),
        metavar="ANNOTATIONS",
        help="FashionIQ annotations folder: items get the categories its image_splits/ list them under",
    )
    p.add_argument(
        "--products",
        type=opt.readable_file,
        metavar="FILE",
        help="CSV with a header: id, category, title, price, currency, url, any other column an attribute "
        "(default: what the index had; categories else the top sub-folder, else unknown)",
    )
    p.add_argument(
        "--categories",
        dest="products",
        type=opt.readable_file,
        action=opt.OldSpelling,
        current="--products",
        help=argparse.SUPPRESS,
    )
    p.set_defaults(func=run_index)

    p = subparsers.add_parser("recommend", help="top-k catalog items for a reference image and a text change")
    _add_model_and_index(p)
    reference = p.add_mutually_exclusive_group(required=True)
    reference.add_argument("--image", type=opt.existing_file("reference image"), help="reference image file")
    reference.add_argument("--item", metavar="ID", help="a catalog item as the reference (its id in the index)")
    p.add_argument("--text", required=True, type=opt.feedback_text, help='the change, e.g. "is red with long sleeves"')
    p.add_argument("-k", type=opt.results_count, default=10, help=f"number of results, 1 to {opt.MAX_K} (default: 10)")
    p.add_argument("--category", help="only items of this category (see `fashionrec index`'s summary)")
    p.add_argument(
        "--json", action="store_true", help="print JSON (every field, the image path too) instead of a table"
    )
    p.set_defaults(func=run_recommend)

    p = subparsers.add_parser("serve", help="HTTP API and web page over an index")
    _add_model_and_index(p)
    opt.add_options(p, opt.HOST, opt.PORT)
    # One thread by default: concurrency comes from batching requests; more help a large model on its own CPU.
    opt.THREADS.with_default(1).add_to(p)
    p.add_argument(
        "--admin-token-file",
        type=opt.readable_file,
        metavar="FILE",
        help="file holding the token that enables the /admin routes (default: $FASHIONREC_ADMIN_TOKEN; none: off)",
    )
    p.set_defaults(func=run_serve)


def _add_model_and_index(p: argparse.ArgumentParser) -> None:
    opt.CHECKPOINT.with_help("the checkpoint the index was built with").add_to(p, required=True)
    opt.add_options(p, opt.INDEX, opt.CATALOG_NAME, opt.DATABASE_DIR)
    opt.add_options(p, opt.DEVICE, opt.VOCAB, opt.QDRANT_API_KEY_FILE)


def store_options(args: argparse.Namespace) -> StoreOptions:
    """The catalog store settings of a command: the Qdrant API key from its file or QDRANT_API_KEY."""
    from fashionrec.credentials import read_secret
    from fashionrec.index.store import StoreOptions

    key = read_secret(args.qdrant_api_key_file, QDRANT_KEY_ENV)
    settings = {name: getattr(args, name, None) for name in ("backend", "url", "collection", "approx_threshold")}
    return StoreOptions(**settings, qdrant_api_key=key, catalog=args.catalog_name)


def catalog_location(args: argparse.Namespace, flag: str = "--index") -> str:
    """The command's catalog: `flag` (a folder or a database URL), else `--database-dir` (the embedded
    server there, started if no process runs it), else $FASHIONREC_DATABASE_URL. Checked before anything
    heavy is imported."""
    from fashionrec.index.registry import check_url, is_url

    given = getattr(args, flag.lstrip("-"))
    if given is not None and args.database_dir is not None:
        raise UserError(f"give either {flag} or --database-dir, not both")
    if given is None and args.database_dir is None:
        given = os.environ.get(opt.DATABASE_URL_ENV, "").strip() or None
        if given is None:
            raise UserError(
                f"give {flag} (an index folder or a database URL), --database-dir DIR, or set {opt.DATABASE_URL_ENV}"
            )
        if not is_url(given):
            raise UserError(f"{opt.DATABASE_URL_ENV} must be a database URL (postgresql://...), got {given[:80]!r}")
        check_url(given)
    if given is not None and not is_url(given) and args.catalog_name is not None:
        raise UserError(f"--catalog-name names a catalog in a database, and {flag} {given} is a folder")
    if given is not None:
        return given
    from fashionrec.index.postgres.embedded import start

    return start(Path(args.database_dir))


def run_index(args: argparse.Namespace) -> int:
    if args.images is None and args.from_mongo_export is None:
        raise UserError(
            "the following arguments are required: --images (or --from-mongo-export FILE, with which it is optional)"
        )
    from fashionrec.index import build_index
    from fashionrec.index.categories import from_split_files, merge
    from fashionrec.index.products import read_products
    from fashionrec.index.registry import redact

    sources = [from_split_files(args.path_file)] if args.path_file else []
    listing = read_products(args.products) if args.products else None
    sources += [listing.categories] if listing else []
    options = store_options(args)
    location = catalog_location(args, "--out")
    settings = {
        "rebuild": args.rebuild,
        "cache_dir": Path(args.cache_dir),
        "device": args.device,
        "crop": args.crop,
        "landmarks": args.landmarks,
        "yolo_weights": args.yolo_weights,
        "categories": merge(*sources) if sources else None,
        "products": listing.products if listing else None,
        "text_model": args.text_model,
    }
    if args.from_mongo_export is not None:
        from fashionrec.index.vector_import import import_catalog

        export = Path(args.from_mongo_export)
        images = None if args.images is None else Path(args.images)
        report = import_catalog(args.checkpoint, export, location, images=images, options=options, **settings)
    else:
        report = build_index(
            args.checkpoint,
            args.images,
            location,
            backend=options.backend,
            url=options.url,
            collection=options.collection,
            approx_threshold=options.approx_threshold,
            qdrant_api_key=options.qdrant_api_key,
            catalog=options.catalog,
            batch_size=args.batch,
            **settings,
        )
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"index {redact(location)}: {report.summary()}")
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from fashionrec.index import recommend

    location = catalog_location(args)
    options = store_options(args)
    matches = recommend(
        args.checkpoint,
        location,
        args.image,
        args.text,
        args.k,
        device=args.device,
        item_id=args.item,
        category=args.category,
        text_model=args.text_model,
        options=options,
    )
    if args.json:
        results = [
            {
                "id": m.id,
                "path": None if m.path is None else str(m.path),
                "score": round(m.score, 6),
                "categories": list(m.categories),
                **m.product.to_json(),
            }
            for m in matches
        ]
        reference = {"image": str(args.image)} if args.image else {"item": args.item}
        query = {**reference, "text": args.text, "k": args.k, "category": args.category}
        print(json.dumps({**query, "results": results}, indent=2, ensure_ascii=False))
        return 0
    rows = [
        [str(rank), m.id, ",".join(m.categories), m.product.title or "", _price(m.product), f"{m.score:.4f}"]
        for rank, m in enumerate(matches, 1)
    ]
    print(table(["rank", "id", "categories", "title", "price", "score"], rows, right=(0, 5)))
    return 0


def _price(product: Any) -> str:
    return " ".join(part for part in (product.price, product.currency) if part)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns as wide as their widest cell, two spaces apart; columns in `right` aligned right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_serve(args: argparse.Namespace) -> int:
    from fashionrec.serve.listen import bind

    listener = bind(args.host, args.port)  # a port in use is an error before the model loads
    location = catalog_location(args)
    from fashionrec.serve.admin import read_admin_token
    from fashionrec.serve.server import serve

    token = read_admin_token(args.admin_token_file)
    options = store_options(args)
    serve(
        args.checkpoint,
        location,
        listener,
        args.device,
        args.threads,
        args.text_model,
        admin_token=token,
        options=options,
    )
    return 0
