"""`fashionrec dataset-info` and `fashionrec make-demo-data`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fashionrec.data.decode_check import corrupt_images
from fashionrec.data.demo import make_demo_data
from fashionrec.data.fashioniq import SPLITS, load_split
from fashionrec.data.images import check_images_folder, resolve_images, split_image_ids
from fashionrec.options import VOCAB, add_dataset_options, folder_to_write, positive_int

SHOWN_CORRUPT = 20  # corrupt files named one a line on stderr; the rest are counted


def register(subparsers: argparse._SubParsersAction) -> None:
    info = subparsers.add_parser(
        "dataset-info", help="count queries, gallery, and missing or corrupt images per category"
    )
    add_dataset_options(info, skip_missing=False)
    info.add_argument("--split", choices=SPLITS, default="val", help="split to report on (default: val)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    info.add_argument(
        "--no-decode-check", dest="decode_check", action="store_false",
        help="only look for the image files; do not decode each one to find corrupt files",
    )  # fmt: skip
    VOCAB.add_to(info)
    info.set_defaults(func=dataset_info)

    demo = subparsers.add_parser("make-demo-data", help="write a small learnable dataset in the FashionIQ layout")
    demo.add_argument(
        "out", type=folder_to_write("output folder"), metavar="OUT", help="folder to write the dataset in"
    )
    demo.add_argument("--images", type=positive_int, default=600, metavar="N", help="images in all (default: 600)")
    demo.add_argument(
        "--val-images",
        type=positive_int,
        metavar="N",
        help="validation gallery per category (default: a quarter of its images)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the pictures and captions (default: 0)")
    demo.set_defaults(func=make_demo)


def dataset_info(args: argparse.Namespace) -> int:
    splits = load_split(args.path_file, args.split, args.categories, args.text_model)
    folder = check_images_folder(args.path_folder)
    needed = {name: split_image_ids(s) for name, s in splits.items()}
    found = resolve_images(folder, [i for ids in needed.values() for i in ids])
    corrupt = corrupt_images(found) if args.decode_check else {}
    for image_id in list(corrupt)[:SHOWN_CORRUPT]:
        print(f"corrupt: {corrupt[image_id]}", file=sys.stderr)
    if len(corrupt) > SHOWN_CORRUPT:
        print(f"corrupt: ... and {len(corrupt) - SHOWN_CORRUPT} more", file=sys.stderr)
    report = {}
    for name, s in splits.items():
        row = {"queries": len(s.triplets), "gallery": len(s.gallery)}
        row["missing_images"] = sum(i not in found for i in needed[name])
        if args.decode_check:
            row["corrupt_images"] = sum(i in corrupt for i in needed[name])
        report[name] = row
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.split} split of {args.path_file}, images in {folder}")
    corrupt_title = f"{'corrupt':>9}" if args.decode_check else ""
    print(f"{'category':<10}{'queries':>9}{'gallery':>9}{'missing':>9}{corrupt_title}  captions/query")
    for name, s in splits.items():
        counts = [len(t.captions) for t in s.triplets] or [0]
        captions = f"{sum(counts) / len(counts):.2f} (min {min(counts)}, max {max(counts)})"
        row = report[name]
        corrupt_count = f"{row['corrupt_images']:>9}" if args.decode_check else ""
        print(f"{name:<10}{row['queries']:>9}{row['gallery']:>9}{row['missing_images']:>9}{corrupt_count}  {captions}")
    return 0


def make_demo(args: argparse.Namespace) -> int:
    root = make_demo_data(Path(args.out), args.images, args.seed, val_images=args.val_images)
    print(f"demo data in {root}: use --path-file {root} --path-folder {root / 'images'}")
    return 0
