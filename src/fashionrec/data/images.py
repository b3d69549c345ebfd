"""Where a FashionIQ image id lives on disk, and what to do about the ones that are not there."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from fashionrec.data.fashioniq import CategorySplit
from fashionrec.errors import UserError

# An id resolves to the first of these that exists (the order settles an id present twice).
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")


def check_images_folder(folder: str | Path) -> Path:
    """The images folder as a Path; a missing one is a user error rather than "every image is missing"."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"images folder not found: {path}")
    return path


def resolve_image(folder: str | Path, image_id: str) -> Path | None:
    """The file of one id (`<id>.jpg`, `.png` or `.jpeg`), or None when there is none."""
    for ext in IMAGE_EXTENSIONS:
        path = Path(folder) / f"{image_id}{ext}"
        if path.is_file():
            return path
    return None


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


def image_paths(splits: Iterable[CategorySplit], folder: str | Path) -> dict[str, Path]:
    """id -> file for every image the splits need (what `ImageCache.build` takes); all must exist."""
    splits = list(splits)
    needed = list(dict.fromkeys(i for s in splits for i in split_image_ids(s)))
    found = resolve_images(folder, needed)
    absent = [i for i in needed if i not in found]
    if absent:
        raise UserError(f"{len(absent)} images missing from {Path(folder)}, e.g. {absent[0]}.jpg/.png/.jpeg")
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
