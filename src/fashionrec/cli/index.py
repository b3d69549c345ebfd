"""`fashionrec index`, `recommend` and `serve`: build a catalog index, query it, serve it over HTTP."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionrec import options as opt


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="encode a folder of catalog images into a search index")
    opt.CHECKPOINT.with_help("training checkpoint or model directory").add_to(p, required=True)
    opt.IMAGES.add_to(p, required=True)
    p.add_argument(
        "--out", required=True, type=opt.folder_to_write("index folder"), metavar="DIR",
        help="index folder (created or updated)",
    )  # fmt: skip
    p.add_argument("--backend", choices=("faiss", "qdrant"), default="faiss", help="vector store (default: faiss)")
    p.add_argument("--url", help="qdrant: http(s)://host:port, or a folder for qdrant-client's local mode")
    p.add_argument("--collection", help="qdrant collection name")
    p.add_argument(
        "--approx-threshold",
        type=opt.non_negative_int,
        metavar="N",
        help="faiss: catalogs of more than N items get an approximate IVF index (default: 100000)",
    )
    p.add_argument("--rebuild", action="store_true", help="re-encode everything (e.g. for a new checkpoint)")
    opt.add_options(p, opt.BATCH, opt.CACHE_DIR, opt.DEVICE)
    # Preprocessing: the checkpoint's own unless overridden here.
    opt.add_options(p, opt.CROP, opt.LANDMARKS, opt.YOLO_WEIGHTS, opt.VOCAB)
    p.add_argument(
        "--path-file",
        type=opt.existing_folder("annotations folder"),
        metavar="ANNOTATIONS",
        help="FashionIQ annotations folder: items get the categories its image_splits/ list them under",
    )
    p.add_argument(
        "--categories",
        type=opt.existing_file("categories file"),
        metavar="FILE",
        help="CSV of id,category rows (default: what the index had, else the top sub-folder, else unknown)",
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
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_recommend)

    p = subparsers.add_parser("serve", help="HTTP API and web page over an index")
    _add_model_and_index(p)
    opt.add_options(p, opt.HOST, opt.PORT)
    # One thread by default: concurrency comes from batching requests; more help a large model on its own CPU.
    opt.THREADS.with_default(1).add_to(p)
    p.set_defaults(func=run_serve)


def _add_model_and_index(p: argparse.ArgumentParser) -> None:
    opt.CHECKPOINT.with_help("the checkpoint the index was built with").add_to(p, required=True)
    opt.add_options(p, opt.INDEX, required=True)
    opt.add_options(p, opt.DEVICE, opt.VOCAB)


def run_index(args: argparse.Namespace) -> int:
    from fashionrec.index import build_index
    from fashionrec.index.categories import from_csv, from_split_files, merge

    sources = [from_split_files(args.path_file)] if args.path_file else []
    sources += [from_csv(args.categories)] if args.categories else []

    report = build_index(
        args.checkpoint,
        args.images,
        args.out,
        backend=args.backend,
        url=args.url,
        collection=args.collection,
        approx_threshold=args.approx_threshold,
        rebuild=args.rebuild,
        batch_size=args.batch,
        cache_dir=Path(args.cache_dir),
        device=args.device,
        crop=args.crop,
        landmarks=args.landmarks,
        yolo_weights=args.yolo_weights,
        categories=merge(*sources) if sources else None,
        text_model=args.text_model,
    )
    print(f"index {args.out}: {report.summary()}")
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from fashionrec.index import recommend

    matches = recommend(
        args.checkpoint,
        args.index,
        args.image,
        args.text,
        args.k,
        device=args.device,
        item_id=args.item,
        category=args.category,
        text_model=args.text_model,
    )
    if args.json:
        results = [
            {"id": m.id, "path": str(m.path), "score": round(m.score, 6), "categories": list(m.categories)}
            for m in matches
        ]
        reference = {"image": str(args.image)} if args.image else {"item": args.item}
        query = {**reference, "text": args.text, "k": args.k, "category": args.category}
        print(json.dumps({**query, "results": results}, indent=2))
        return 0
    for rank, m in enumerate(matches, 1):
        print(f"{rank:>3}  {m.score:.4f}  {m.id}  {','.join(m.categories)}  {m.path}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from fashionrec.serve.listen import bind

    listener = bind(args.host, args.port)  # a port in use is an error before the model loads
    from fashionrec.serve.server import serve

    serve(args.checkpoint, args.index, listener, args.device, args.threads, args.text_model)
    return 0
