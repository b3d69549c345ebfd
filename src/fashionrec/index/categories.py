"""Where a catalog item's categories come from: FashionIQ split files, the products CSV
(`fashionrec.index.products`), or its folder.

An item may be in several categories: FashionIQ lists about 3,300 images under both shirt and toptee, and
a category filter must find each of them under either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from fashionrec.data.fashioniq import parse_ids
from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError

UNKNOWN = "unknown"
MAX_NAME_CHARS = 100
_SPLIT_FILE = re.compile(r"split\.(?P<category>[^.]+)\.[^.]+\.json")

Categories = dict[str, tuple[str, ...]]


def check_name(name: str, where: str | None = None) -> str:
    """A category name as stored: non-blank, at most MAX_NAME_CHARS, no surrounding spaces."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        prefix = f"{where}: " if where else ""
        raise UserError(f"{prefix}a category must be 1 to {MAX_NAME_CHARS} characters, got {name[:120]!r}")
    return name


def from_split_files(path_file: Path) -> Categories:
    """id -> categories from FashionIQ's `image_splits/split.<category>.<split>.json` (every split, test
    included: a catalog of FashionIQ images holds them all)."""
    folder = Path(path_file) / "image_splits"
    if not folder.is_dir():
        raise UserError(f"{path_file} has no image_splits/ folder (the FashionIQ annotations layout)")
    pairs = []
    for path in sorted(folder.glob("split.*.*.json")):
        match = _SPLIT_FILE.fullmatch(path.name)
        if match is None:
            continue
        ids = parse_ids(read_json(path), path)
        category = check_name(match["category"], str(path))
        pairs += [(i, category) for i in ids]
    if not pairs:
        raise UserError(f"{folder} holds no split.<category>.<split>.json files")
    return _group(pairs)


def merge(*sources: Mapping[str, tuple[str, ...]]) -> Categories:
    """Every category any source gives an id."""
    return _group((i, c) for source in sources for i, names in source.items() for c in names)


def assign(
    ids: Iterable[str], given: Mapping[str, tuple[str, ...]], previous: Mapping[str, tuple[str, ...]]
) -> Categories:
    """Each item's categories: what this build was given, else what the index recorded before (an update
    without category flags keeps them), else its top folder (`dress/B00X` is a dress), else unknown."""
    result = {}
    for item_id in ids:
        kept = previous.get(item_id) if previous.get(item_id) != (UNKNOWN,) else None
        folder = (item_id.split("/")[0],) if "/" in item_id else None
        result[item_id] = given.get(item_id) or kept or folder or (UNKNOWN,)
    return result


def _group(pairs: Iterable[tuple[str, str]]) -> Categories:
    grouped: dict[str, dict[str, None]] = {}
    for item_id, category in pairs:
        grouped.setdefault(item_id, {})[category] = None
    return {item_id: tuple(sorted(names)) for item_id, names in grouped.items()}
