"""The FashionIQ reader on the real annotation files, the legacy layout, and every way input goes wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionrec.data.fashioniq import CATEGORIES, Triplet, caption_text, load_split
from fashionrec.data.images import drop_missing, image_paths, missing_images, resolve_images, split_image_ids
from fashionrec.errors import UserError

# (queries, gallery) per category, from the dataset's README.
REAL_COUNTS = {
    "val": {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)},
    "train": {"dress": (5985, 11452), "shirt": (5988, 19036), "toptee": (6027, 16121)},
}


@pytest.mark.parametrize("split", ["val", "train"])
def test_real_annotations_have_the_published_counts(fashioniq: Path, split: str) -> None:
    splits = load_split(fashioniq, split)
    assert list(splits) == list(CATEGORIES)
    counts = {name: (len(s.triplets), len(s.gallery)) for name, s in splits.items()}
    assert counts == REAL_COUNTS[split]
    for name, s in splits.items():
        assert all(t.category == name and len(t.captions) == 2 for t in s.triplets)


def test_training_caches_60033_distinct_images(fashioniq: Path) -> None:
    """docs/reproduce.md's cache size: training preprocesses every image its train and val splits need."""
    needed = {
        i for split in ("train", "val") for s in load_split(fashioniq, split).values() for i in split_image_ids(s)
    }
    assert len(needed) == 60_033


def test_real_val_queries_rank_within_their_category_gallery(fashioniq: Path) -> None:
    splits = load_split(fashioniq, "val")
    first = json.loads((fashioniq / "captions/cap.dress.val.json").read_text())[0]
    assert splits["dress"].triplets[0] == Triplet(
        first["candidate"], first["target"], tuple(first["captions"]), "dress"
    )
    for s in splits.values():
        gallery = set(s.gallery)
        assert all(t.candidate in gallery and t.target in gallery for t in s.triplets)


def test_categories_select_and_order(fashioniq: Path) -> None:
    splits = load_split(fashioniq, "val", ["toptee", "dress"])
    assert list(splits) == ["toptee", "dress"]


def test_real_ids_with_stand_in_images(fashioniq: Path, tmp_path: Path, stand_in_images) -> None:
    dress = load_split(fashioniq, "val", ["dress"])["dress"]
    present = {i for t in dress.triplets[:20] for i in (t.candidate, t.target)}
    stand_in_images(tmp_path, sorted(present))
    kept, dropped = drop_missing(dress, tmp_path)
    expected = [t for t in dress.triplets if t.candidate in present and t.target in present]
    assert kept.triplets == expected and len(expected) >= 20
    assert dropped == len(dress.triplets) - len(expected)
    assert set(kept.gallery) == present & set(dress.gallery)
    assert set(image_paths([kept], tmp_path)) == present
    assert len(missing_images([dress], tmp_path)) == len(set(dress.gallery) - present)


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def official_layout(root: Path, categories: tuple[str, ...] = CATEGORIES) -> Path:
    for name in categories:
        records = [{"candidate": f"{name}1", "target": f"{name}2", "captions": ["is red", "longer"]}]
        write_json(root / f"captions/cap.{name}.val.json", records)
        write_json(root / f"image_splits/split.{name}.val.json", [f"{name}1", f"{name}2", f"{name}3"])
    return root


def test_legacy_single_file_layout(tmp_path: Path) -> None:
    records = [
        {"candidate": "a", "target": "b", "captions": ["is red", "has sleeves"]},
        {"candidate": "c", "target": "a", "captions": ["is blue"]},
    ]
    write_json(tmp_path / "train.json", records)
    write_json(tmp_path / "val.json", records[:1])
    train = load_split(tmp_path, "train")
    assert list(train) == ["all"]
    assert train["all"].triplets == [
        Triplet("a", "b", ("is red", "has sleeves"), "all"),
        Triplet("c", "a", ("is blue",), "all"),
    ]
    assert train["all"].gallery == ["a", "b", "c"]
    assert load_split(tmp_path, "val", ["all"])["all"].gallery == ["a", "b"]
    with pytest.raises(UserError, match="only category is 'all'"):
        load_split(tmp_path, "train", ["dress"])


def test_missing_annotation_folder_or_a_file_in_its_place(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"annotations folder not found: {tmp_path / 'nope'}$"):
        load_split(tmp_path / "nope", "val")
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(UserError, match=f"annotations folder {tmp_path / 'train.json'} is a file, not a folder$"):
        load_split(tmp_path / "train.json", "val")


def test_folder_of_neither_layout(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither captions/"):
        load_split(tmp_path, "val")


def test_missing_annotation_file(tmp_path: Path) -> None:
    official_layout(tmp_path, ("dress", "toptee"))
    with pytest.raises(UserError, match=f"file not found: {tmp_path / 'captions/cap.shirt.val.json'}"):
        load_split(tmp_path, "val")
    assert list(load_split(tmp_path, "val", ["dress"])) == ["dress"]


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    official_layout(tmp_path)
    bad = tmp_path / "captions/cap.shirt.val.json"
    bad.write_text('[\n  {"candidate": "a",\n   "target": "b" "captions": []}\n]\n')
    with pytest.raises(UserError) as info:
        load_split(tmp_path, "val")
    assert str(info.value).startswith(f"{bad}: malformed JSON at line 3, column 18")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"candidate": "a"}, "expected a JSON list"),
        (["a"], "record 0 is not a JSON object"),
        ([{"candidate": "a", "captions": []}], "record 0 has no image id under 'target'"),
        ([{"candidate": "a", "target": "b", "captions": "red"}], "'captions' must be a list of strings"),
    ],
)
def test_malformed_records(tmp_path: Path, records: object, message: str) -> None:
    official_layout(tmp_path)
    path = write_json(tmp_path / "captions/cap.dress.val.json", records)
    with pytest.raises(UserError, match=message) as info:
        load_split(tmp_path, "val")
    assert str(path) in str(info.value)


def test_malformed_gallery(tmp_path: Path) -> None:
    official_layout(tmp_path)
    write_json(tmp_path / "image_splits/split.toptee.val.json", [1, 2])
    with pytest.raises(UserError, match="split.toptee.val.json: expected a JSON list of image ids"):
        load_split(tmp_path, "val")


def test_unknown_category_and_split(tmp_path: Path) -> None:
    official_layout(tmp_path)
    with pytest.raises(UserError, match="unknown category 'pants'"):
        load_split(tmp_path, "val", ["dress", "pants"])
    with pytest.raises(UserError, match="unknown split 'test'"):
        load_split(tmp_path, "test")


def test_caption_text_fixed_order_in_evaluation() -> None:
    captions = ("  is red ", "has\tlong sleeves", "")
    assert caption_text(captions, None) == "is red and has long sleeves"


def test_caption_text_shuffles_by_seed_only() -> None:
    captions = ("a", "b", "c")
    orders = {caption_text(captions, seed) for seed in range(40)}
    assert len(orders) == 6  # every order of three captions turns up
    assert all(caption_text(captions, s) == caption_text(captions, s) for s in range(40))


def test_resolve_image_extension_order(tmp_path: Path) -> None:
    for name in ("a.png", "a.jpg", "b.jpeg", "b.png", "c.jpeg", "d.gif"):
        (tmp_path / name).touch()
    ids = ["a", "b", "c", "d", "e"]
    expected = {"a": tmp_path / "a.jpg", "b": tmp_path / "b.png", "c": tmp_path / "c.jpeg"}
    assert resolve_images(tmp_path, ids) == expected


def test_missing_images_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"images folder not found: {tmp_path / 'imgs'}$"):
        resolve_images(tmp_path / "imgs", ["a"])


def test_image_paths_requires_every_image(tmp_path: Path, stand_in_images) -> None:
    split = load_split(official_layout(tmp_path / "ann", ("dress",)), "val", ["dress"])["dress"]
    stand_in_images(tmp_path / "img", ["dress1", "dress2"])
    with pytest.raises(UserError, match=r"1 images missing from .*img, e\.g\. dress3"):
        image_paths([split], tmp_path / "img")
