"""Where a FashionIQ image id lives on disk, and what to do about the ones that are not there."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from fashionrec.data.fashioniq import CategorySplit, load_split
from fashionrec.errors import UserError
from fashionrec.paths import existing_folder

# An id resolves to the first of these that exists (the order settles an id present twice).
# (Catalog folders for the index accept the same files.)
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".webp")
DECODE_THREADS = min(8, os.cpu_count() or 1)  # threads that decode images: PIL releases the GIL


def check_images_folder(folder: str | Path) -> Path:
    """The images folder as a Path; a missing one is a user error rather than "every image is missing"."""
    return existing_folder(folder, "images folder")


def resolve_images(folder: str | Path, ids: Iterable[str]) -> dict[str, Path]:
    """The files of many ids from one listing of the folder (FashionIQ has ~75k); absent ids are left out."""
    root = check_images_folder(folder)
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext in rank and entry.is_file() and (stem not in best or rank[ext] < best[stem][0]):
                best[stem] = (rank[ext], entry.name)
    return {i: root / best[i][1] for i in dict.fromkeys(ids) if i in best}


def split_image_ids(split: CategorySplit) -> list[str]:
    """Every image a split needs: its queries' candidates and targets, and its gallery."""
    ids = (i for t in split.triplets for i in (t.candidate, t.target))
    return list(dict.fromkeys([*ids, *split.gallery]))


def missing_images(splits: Iterable[CategorySplit], folder: str | Path) -> list[str]:
    """Ids the splits need that have no file in `folder`, in first-mention order."""
    needed = list(dict.fromkeys(i for s in splits for i in split_image_ids(s)))
    found = resolve_images(folder, needed)
    return [i for i in needed if i not in found]


def drop_missing(split: CategorySplit, path_folder: str | Path) -> tuple[CategorySplit, int]:
    """The split without queries whose candidate or target has no file (and without absent gallery ids);
    returns it with the number of queries dropped."""
    found = resolve_images(path_folder, split_image_ids(split))
    triplets = [t for t in split.triplets if t.candidate in found and t.target in found]
    gallery = [i for i in split.gallery if i in found]
    kept = dataclasses.replace(split, triplets=triplets, gallery=gallery)
    return kept, len(split.triplets) - len(triplets)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_split_with_images(
    path_file: str | Path,
    path_folder: str | Path,
    split: str,
    categories: Sequence[str] | None = None,
    skip_missing: bool = False,
    log: Callable[[str], None] = _stderr,
    text_model: str | None = None,
) -> dict[str, CategorySplit]:
    """One split whose images must all be in `path_folder`; with `skip_missing` the queries whose images
    are absent are dropped instead, with a one-line report. `text_model`: see `load_split`."""
    splits = load_split(path_file, split, categories, text_model)
    folder = check_images_folder(path_folder)
    absent = missing_images(splits.values(), folder)
    if not absent:
        return splits
    if not skip_missing:
        raise UserError(
            f"{len(absent)} images of the {split} split are missing from {folder} "
            f"(first: {absent[0]}); pass --skip-missing to drop their queries"
        )
    total = sum(len(s.triplets) for s in splits.values())
    dropped = 0
    for name, category in splits.items():
        splits[name], n = drop_missing(category, folder)
        dropped += n
    log(f"--skip-missing: dropped {dropped} of {total} {split} queries with missing images")
    return splits


def image_paths(splits: Iterable[CategorySplit], folder: str | Path) -> dict[str, Path]:
    """id -> file for every image the splits need (what `ImageCache.build` takes); all must exist."""
    splits = list(splits)
    needed = list(dict.fromkeys(i for s in splits for i in split_image_ids(s)))
    found = resolve_images(folder, needed)
    absent = [i for i in needed if i not in found]
    if absent:
        raise UserError(
            f"{len(absent)} images missing from {Path(folder)}, e.g. {absent[0]} ({'/'.join(IMAGE_EXTENSIONS)})"
        )
    return found


def load_image(path: Path) -> Image.Image:
    """Decode an image file as upright RGB; an unreadable file is named in a user error."""
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
