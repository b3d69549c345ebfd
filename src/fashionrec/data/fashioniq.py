"""FashionIQ annotations as they are published, plus the single-file layout of the original system.

Official layout (`--path-file DIR`): `DIR/captions/cap.<category>.<split>.json` holds the queries and
`DIR/image_splits/split.<category>.<split>.json` the gallery (the category's images in that split).
Legacy layout (the original system's): `DIR/<split>.json`, one list of queries with no category; we call it
"all" and its gallery is every image the split mentions. Its records hold either `captions` or
`feedback_tokens`: bert-base-uncased ids padded to 100 (0 = [PAD]), decoded back to text here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionrec.bertvocab import find_vocab, read_vocab
from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError
from fashionrec.paths import existing_folder

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


def caption_parts(captions: Sequence[str]) -> list[str]:
    """The captions as `caption_text` joins them: whitespace collapsed, empty ones left out."""
    return [p for p in (" ".join(c.split()) for c in captions) if p]


def caption_text(captions: Sequence[str], order_seed: int | None) -> str:
    """Join the captions with " and "; `order_seed` shuffles them (training), None keeps the file order."""
    parts = caption_parts(captions)
    if order_seed is not None:
        random.Random(order_seed).shuffle(parts)
    return " and ".join(parts)


def load_split(
    path_file: str | Path, split: str, categories: Sequence[str] | None = None, text_model: str | None = None
) -> dict[str, CategorySplit]:
    """Read one split of either layout; `categories` None means every category the layout has. `text_model`
    (a folder or Hugging Face name, see `bertvocab.find_vocab`) supplies the vocabulary that decodes
    `feedback_tokens`; it is looked up only when a record has them."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    root = existing_folder(path_file, "annotations folder")
    if (root / "captions").is_dir() or (root / "image_splits").is_dir():
        return _load_official(root, split, categories)
    if any((root / f"{s}.json").is_file() for s in SPLITS):
        return _load_legacy(root, split, categories, text_model)
    raise UserError(f"{root}: holds neither captions/ and image_splits/ nor train.json/val.json")


def parse_categories(text: str) -> list[str]:
    """The --categories flag of every command: "dress,shirt" becomes ["dress", "shirt"] (duplicates dropped).
    Names are checked by load_split, against the layout actually read (FashionIQ's three categories, or
    'all' for the single-file layout), before any image is touched."""
    names = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
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
        gallery = parse_ids(read_json(gallery_path), gallery_path)
        result[name] = CategorySplit(name, triplets, gallery)
    return result


def _load_legacy(
    root: Path, split: str, categories: Sequence[str] | None, text_model: str | None
) -> dict[str, CategorySplit]:
    if categories is not None and list(categories) != [LEGACY_CATEGORY]:
        raise UserError(
            f"unknown category {','.join(categories)!r}: {root} uses the single-file layout, "
            f"whose only category is {LEGACY_CATEGORY!r}"
        )
    path = root / f"{split}.json"
    records = read_json(path)
    if isinstance(records, list) and any(_needs_decoding(r) for r in records):
        records = _decode_feedback(records, path, read_vocab(find_vocab(text_model)))
    triplets = _parse_triplets(records, path, LEGACY_CATEGORY)
    gallery = list(dict.fromkeys(i for t in triplets for i in (t.candidate, t.target)))
    return {LEGACY_CATEGORY: CategorySplit(LEGACY_CATEGORY, triplets, gallery)}


def _decode_feedback(records: list[Any], path: Path, vocab: list[str]) -> list[Any]:
    """Records with `feedback_tokens` and no `captions` get the decoded text as their one caption."""
    out = []
    for i, record in enumerate(records):
        if _needs_decoding(record):
            record = {**record, "captions": [decode_token_ids(record["feedback_tokens"], vocab, f"{path}: record {i}")]}
        out.append(record)
    return out


def _needs_decoding(record: Any) -> bool:
    return isinstance(record, dict) and "captions" not in record and "feedback_tokens" in record


def decode_token_ids(ids: Any, vocab: list[str], where: str) -> str:
    """WordPiece ids back to text: special tokens ([PAD], [CLS], [SEP], ...) dropped, `##` pieces joined to
    their word. Accepts the flat list the original wrote, or that list wrapped in one more list (a [1, L]
    tensor's tolist())."""
    if isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], list):
        ids = ids[0]
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise UserError(f"{where}: 'feedback_tokens' must be a list of token ids")
    words: list[str] = []
    for i in ids:
        if not 0 <= i < len(vocab):
            raise UserError(f"{where}: token id {i} is outside the vocabulary ({len(vocab)} entries)")
        token = vocab[i]
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return " ".join(words)


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
            raise UserError(f"{path}: record {i}: 'captions' must be a list of strings (or 'feedback_tokens' ids)")
        triplets.append(Triplet(record["candidate"], record["target"], tuple(captions), category))
    return triplets


def parse_ids(ids: Any, path: Path) -> list[str]:
    """The content of an `image_splits/` file: a JSON list of non-empty image ids."""
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise UserError(f"{path}: expected a JSON list of image ids")
    return ids
