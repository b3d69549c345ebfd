"""FashionIQ annotations as they are published, plus the single-file layout of the original system.

Official layout (`--path-file DIR`): `DIR/captions/cap.<category>.<split>.json` holds the queries and
`DIR/image_splits/split.<category>.<split>.json` the gallery (the category's images in that split).
Legacy layout: `DIR/<split>.json`, one list of queries with no category; we call it "all" and its gallery
is every image the split mentions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError

CATEGORIES = ("dress", "shirt", "toptee")
SPLITS = ("train", "val")
LEGACY_CATEGORY = "all"


@dataclass(frozen=True)
class Triplet:
    """One query: the candidate image plus the captions that turn it into the target image."""

    candidate: str
    target: str
    captions: tuple[str, ...]
    category: str


@dataclass(frozen=True)
class CategorySplit:
    """The queries of one category in one split, and the gallery they are ranked against."""

    category: str
    triplets: list[Triplet]
    gallery: list[str]


def caption_text(captions: Sequence[str], order_seed: int | None) -> str:
    """Join the captions with " and "; `order_seed` shuffles them (training), None keeps the file order."""
    parts = [" ".join(c.split()) for c in captions]
    parts = [p for p in parts if p]
    if order_seed is not None:
        random.Random(order_seed).shuffle(parts)
    return " and ".join(parts)


def load_split(path_file: str | Path, split: str, categories: Sequence[str] | None = None) -> dict[str, CategorySplit]:
    """Read one split of either layout; `categories` None means every category the layout has."""
    root = Path(path_file)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if not root.is_dir():
        raise UserError(f"annotations folder not found: {root}")
    if (root / "captions").is_dir() or (root / "image_splits").is_dir():
        return _load_official(root, split, categories)
    if any((root / f"{s}.json").is_file() for s in SPLITS):
        return _load_legacy(root, split, categories)
    raise UserError(f"{root}: holds neither captions/ and image_splits/ nor train.json/val.json")


def parse_categories(text: str) -> list[str]:
    """Turn "dress,shirt" into a list, so that a typo fails at the flag, before any file is read."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UserError("--categories is empty")
    return names


def _load_official(root: Path, split: str, categories: Sequence[str] | None) -> dict[str, CategorySplit]:
    names = list(categories) if categories is not None else list(CATEGORIES)
    for name in names:
        if name not in CATEGORIES:
            raise UserError(f"unknown category {name!r} (choose from {', '.join(CATEGORIES)})")
    for sub in ("captions", "image_splits"):
        if not (root / sub).is_dir():
            raise UserError(f"annotations folder not found: {root / sub}")
    result = {}
    for name in dict.fromkeys(names):
        caps_path = root / "captions" / f"cap.{name}.{split}.json"
        triplets = _parse_triplets(read_json(caps_path), caps_path, name)
        gallery_path = root / "image_splits" / f"split.{name}.{split}.json"
        gallery = _parse_ids(read_json(gallery_path), gallery_path)
        result[name] = CategorySplit(name, triplets, gallery)
    return result


def _load_legacy(root: Path, split: str, categories: Sequence[str] | None) -> dict[str, CategorySplit]:
    if categories is not None and list(categories) != [LEGACY_CATEGORY]:
        raise UserError(
            f"unknown category {','.join(categories)!r}: {root} uses the single-file layout, "
            f"whose only category is {LEGACY_CATEGORY!r}"
        )
    path = root / f"{split}.json"
    triplets = _parse_triplets(read_json(path), path, LEGACY_CATEGORY)
    gallery = list(dict.fromkeys(i for t in triplets for i in (t.candidate, t.target)))
    return {LEGACY_CATEGORY: CategorySplit(LEGACY_CATEGORY, triplets, gallery)}


def _parse_triplets(records: Any, path: Path, category: str) -> list[Triplet]:
    if not isinstance(records, list):
        raise UserError(f"{path}: expected a JSON list of query records")
    triplets = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"{path}: record {i} is not a JSON object")
        for key in ("candidate", "target"):
            if not isinstance(record.get(key), str) or not record[key]:
                raise UserError(f"{path}: record {i} has no image id under {key!r}")
        captions = record.get("captions")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise UserError(f"{path}: record {i}: 'captions' must be a list of strings")
        triplets.append(Triplet(record["candidate"], record["target"], tuple(captions), category))
    return triplets


def _parse_ids(ids: Any, path: Path) -> list[str]:
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise UserError(f"{path}: expected a JSON list of image ids")
    return ids
