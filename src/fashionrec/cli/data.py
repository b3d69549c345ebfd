"""`fashionrec dataset-info` and `fashionrec make-demo-data`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionrec.data.args import add_dataset_args
from fashionrec.data.demo import make_demo_data
from fashionrec.data.fashioniq import SPLITS, load_split
from fashionrec.data.images import check_images_folder, missing_images


def register(subparsers: argparse._SubParsersAction) -> None:
    info = subparsers.add_parser("dataset-info", help="count queries, gallery and missing images per category")
    add_dataset_args(info, skip_missing=False)
    info.add_argument("--split", choices=SPLITS, default="val")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    info.set_defaults(func=dataset_info)

    demo = subparsers.add_parser("make-demo-data", help="write a small learnable dataset in the FashionIQ layout")
    demo.add_argument("out", type=Path, metavar="OUT")
    demo.add_argument("--images", type=int, default=600, help="images in all (default: 600)")
    demo.add_argument(
        "--val-images", type=int, metavar="N", help="validation gallery per category (default: a quarter of its images)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=make_demo)


def dataset_info(args: argparse.Namespace) -> int:
    splits = load_split(args.path_file, args.split, args.categories)
    folder = check_images_folder(args.path_folder)
    report = {
        name: {
            "queries": len(s.triplets),
            "gallery": len(s.gallery),
            "missing_images": len(missing_images([s], folder)),
        }
        for name, s in splits.items()
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.split} split of {args.path_file}, images in {folder}")
    print(f"{'category':<10}{'queries':>9}{'gallery':>9}{'missing':>9}  captions/query")
    for name, s in splits.items():
        counts = [len(t.captions) for t in s.triplets] or [0]
        captions = f"{sum(counts) / len(counts):.2f} (min {min(counts)}, max {max(counts)})"
        row = report[name]
        print(f"{name:<10}{row['queries']:>9}{row['gallery']:>9}{row['missing_images']:>9}  {captions}")
    return 0


def make_demo(args: argparse.Namespace) -> int:
    root = make_demo_data(args.out, args.images, args.seed, val_images=args.val_images)
    print(f"demo data in {root}: use --path-file {root} --path-folder {root / 'images'}")
    return 0
