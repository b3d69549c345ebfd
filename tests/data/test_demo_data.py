"""Demo data: the official layout, and the properties that make it learnable (the target follows from
candidate image plus captions, not from the captions alone)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from PIL import Image

from fashionrec.data.demo import COLOURS, Garment, differences, make_demo_data
from fashionrec.data.fashioniq import CATEGORIES, SPLITS, load_split
from fashionrec.errors import UserError

# Words only a caption about that attribute uses.
MENTIONS = {
    "colour": "|".join(COLOURS),
    "pattern": "plain|solid|pattern|stripe|dot",
    "sleeves": "sleeve",
    "length": "mini|maxi|knee|midi|floor|crop|regular|waist|tunic|is long$|is short$",
}


def garments(root: Path) -> dict[str, Garment]:
    return {i: Garment(**a) for i, a in json.loads((root / "attributes.json").read_text()).items()}


def test_official_layout_and_ids(demo_data: Path) -> None:
    for category in CATEGORIES:
        for split in SPLITS:
            assert (demo_data / f"captions/cap.{category}.{split}.json").is_file()
            ids = json.loads((demo_data / f"image_splits/split.{category}.{split}.json").read_text())
            assert all(re.fullmatch(category[0].upper() + r"\d{6}", i) for i in ids)
    pictures = sorted((demo_data / "images").glob("*"))
    assert len(pictures) == 600 and {p.suffix for p in pictures} == {".png"}
    with Image.open(pictures[0]) as picture:
        assert picture.size == (128, 128) and picture.mode == "RGB"
    val = load_split(demo_data, "val")
    assert all(len(s.gallery) == 50 and len(s.triplets) >= 40 for s in val.values())
    train = load_split(demo_data, "train")
    assert not set(train["dress"].gallery) & set(val["dress"].gallery)


def test_targets_change_one_or_two_attributes_and_captions_name_only_those(demo_data: Path) -> None:
    attributes = garments(demo_data)
    for split in SPLITS:
        for s in load_split(demo_data, split).values():
            for t in s.triplets:
                changed = differences(attributes[t.candidate], attributes[t.target])
                assert 1 <= len(changed) <= 2 and attributes[t.candidate].category == s.category
                named = {a for a, words in MENTIONS.items() for c in t.captions if re.search(words, c)}
                assert named == set(changed), t
                if "colour" in changed:
                    assert attributes[t.target].colour in " ".join(t.captions)


def test_text_alone_is_ambiguous_but_image_and_text_are_not(demo_data: Path) -> None:
    """docs/data.md, of the default data: "a val query's captions fit a median of 4 gallery images, while
    candidate attributes plus captions fit exactly one (the target) for every query"."""
    attributes = garments(demo_data)
    text_only, not_unique = [], []
    for s in load_split(demo_data, "val").values():
        for t in s.triplets:
            target = attributes[t.target]
            changed = differences(attributes[t.candidate], target)
            said = {a: getattr(target, a) for a in changed}  # all the captions tell
            fits = [i for i in s.gallery if all(getattr(attributes[i], a) == v for a, v in said.items())]
            text_only.append(len(fits))
            if [i for i in s.gallery if attributes[i] == target] != [t.target]:
                not_unique.append(t)
    assert statistics.median(text_only) == 4
    assert not_unique == []


def test_every_val_gallery_image_has_a_distinct_attribute_set(demo_data: Path) -> None:
    attributes = garments(demo_data)
    for s in load_split(demo_data, "val").values():
        assert len({attributes[i] for i in s.gallery}) == len(s.gallery), s.category


def test_same_seed_same_data(tmp_path: Path) -> None:
    a = make_demo_data(tmp_path / "a", images=24, seed=5)
    b = make_demo_data(tmp_path / "b", images=24, seed=5)
    c = make_demo_data(tmp_path / "c", images=24, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "attributes.json").read_text() != (c / "attributes.json").read_text()


def test_jpeg_and_size_options(tmp_path: Path) -> None:
    root = make_demo_data(tmp_path / "d", images=9, seed=0, image_size=64, image_format="jpg")
    pictures = sorted((root / "images").glob("*"))
    assert len(pictures) == 9 and {p.suffix for p in pictures} == {".jpg"}
    with Image.open(pictures[0]) as picture:
        assert picture.size == (64, 64) and picture.format == "JPEG"


def test_output_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    with pytest.raises(UserError, match="not a folder"):
        make_demo_data(tmp_path / "file", images=9, seed=0)


def test_validation_galleries_of_a_chosen_size(tmp_path: Path) -> None:
    root = make_demo_data(tmp_path / "d", images=90, seed=0, val_images=20, image_size=32)
    val, train = load_split(root, "val"), load_split(root, "train")
    assert all(len(val[c].gallery) == 20 and len(train[c].gallery) == 10 for c in CATEGORIES)
    for bad in (0, 30):
        with pytest.raises(UserError, match="--val-images must be from 1 to 29"):
            make_demo_data(tmp_path / f"bad{bad}", images=90, val_images=bad)
