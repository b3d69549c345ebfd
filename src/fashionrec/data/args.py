"""Command-line flags for the data every command reads (dataset location, preprocessing, cache), so
train, evaluate, index and serve spell and check them the same way."""

from __future__ import annotations

import argparse
import sys

from fashionrec.data.cache import ImageCache
from fashionrec.data.fashioniq import SPLITS, CategorySplit, load_split, parse_categories
from fashionrec.data.images import check_images_folder, drop_missing, missing_images
from fashionrec.data.preprocess import CROPS, LANDMARKS, PreprocessConfig
from fashionrec.errors import UserError


def add_dataset_args(parser: argparse.ArgumentParser, *, skip_missing: bool = True) -> None:
    """--path-file, --path-folder, --categories and (unless `skip_missing` is False) --skip-missing."""
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--path-file", required=True, metavar="DIR",
        help="annotations folder: captions/ and image_splits/ (FashionIQ), or train.json/val.json (legacy)",
    )  # fmt: skip
    group.add_argument("--path-folder", required=True, metavar="DIR", help="images folder: <id>.jpg/.png/.jpeg")
    group.add_argument(
        "--categories", type=parse_categories, default=None, metavar="LIST",
        help="comma-separated FashionIQ categories (default: all of the layout's: dress,shirt,toptee, or 'all')",
    )  # fmt: skip
    if skip_missing:
        group.add_argument(
            "--skip-missing",
            action="store_true",
            help="drop queries whose images are absent instead of failing",
        )


def add_vocab_arg(parser: argparse.ArgumentParser) -> None:
    """--text-model, for commands that read the original system's token ids but build no text model."""
    parser.add_argument(
        "--text-model", default=None, metavar="DIR",
        help="folder holding bert-base-uncased's vocab.txt, for the original system's token ids "
        "(default: the Hugging Face cache, or downloaded)",
    )  # fmt: skip


def splits_from_args(args: argparse.Namespace, split: str) -> dict[str, CategorySplit]:
    """Load one split as the dataset flags say; absent images fail, or with --skip-missing are dropped
    (with a one-line report on stderr)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    splits = load_split(args.path_file, split, args.categories, getattr(args, "text_model", None))
    folder = check_images_folder(args.path_folder)
    absent = missing_images(splits.values(), folder)
    if not absent:
        return splits
    if not getattr(args, "skip_missing", False):
        raise UserError(
            f"{len(absent)} images of the {split} split are missing from {folder} "
            f"(first: {absent[0]}); pass --skip-missing to drop their queries"
        )
    total = sum(len(s.triplets) for s in splits.values())
    dropped = 0
    for name, category in splits.items():
        splits[name], n = drop_missing(category, folder)
        dropped += n
    print(f"--skip-missing: dropped {dropped} of {total} {split} queries with missing images", file=sys.stderr)
    return splits


def add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    """--cache-dir, --image-size, --crop, --landmarks, --yolo-weights."""
    defaults = PreprocessConfig()
    group = parser.add_argument_group("preprocessing")
    group.add_argument("--cache-dir", default="cache", metavar="DIR", help="preprocessing cache (default: cache)")
    group.add_argument("--image-size", type=int, default=defaults.image_size, help="model input side in pixels")
    group.add_argument("--crop", choices=CROPS, default=defaults.crop, help="clothing crop backend")
    group.add_argument("--landmarks", choices=LANDMARKS, default=defaults.landmarks, help="body landmarks backend")
    group.add_argument("--yolo-weights", default=None, metavar="FILE", help="ultralytics weights for --crop yolo")


def preprocess_config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    return PreprocessConfig(
        image_size=args.image_size, crop=args.crop, landmarks=args.landmarks, yolo_weights=args.yolo_weights
    )


def cache_from_args(args: argparse.Namespace) -> ImageCache:
    """The cache of the preprocessing flags (build it with the images a command needs)."""
    return ImageCache(args.cache_dir, preprocess_config_from_args(args))
