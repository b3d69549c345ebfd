"""Item categories: read from FashionIQ split files, a CSV or folders, stored in the manifest, kept by updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images

from fashionrec.errors import UserError
from fashionrec.index import Recommender, build_index
from fashionrec.index.categories import UNKNOWN, assign, from_split_files, merge
from fashionrec.index.manifest import MANIFEST, load_manifest
from fashionrec.index.products import read_products
from fashionrec.index.registry import open_catalog


def test_split_files_give_every_split_and_both_categories_of_a_shared_image(tmp_path: Path) -> None:
    splits = tmp_path / "image_splits"
    splits.mkdir()
    (splits / "split.shirt.train.json").write_text(json.dumps(["s1", "both"]))
    (splits / "split.toptee.test.json").write_text(json.dumps(["t1", "both"]))
    (splits / "split.dress.val.json").write_text(json.dumps(["d1"]))
    (splits / "notes.txt").write_text("not a split file")
    assert from_split_files(tmp_path) == {
        "s1": ("shirt",),
        "both": ("shirt", "toptee"),
        "t1": ("toptee",),
        "d1": ("dress",),
    }


def test_split_files_of_the_demo_data(demo_data: Path) -> None:
    categories = from_split_files(demo_data)
    assert len(categories) == 600
    assert {names for i, names in categories.items() if i.startswith("D")} == {("dress",)}


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "has no image_splits/ folder"),
        (lambda root: (root / "image_splits").mkdir(), "holds no split.<category>.<split>.json"),
        (lambda root: _write(root / "image_splits/split.dress.val.json", '{"a": 1}'), "expected a JSON list"),
        (lambda root: _write(root / "image_splits/split.dress.val.json", "[1,"), "malformed JSON"),
    ],
)
def test_bad_split_folders_are_user_errors(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_split_files(tmp_path)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_categories_file_of_earlier_releases_is_read_as_before(tmp_path: Path) -> None:
    """`id,category` rows, with or without that header; an id on several rows is in several categories."""
    path = tmp_path / "c.csv"
    path.write_text("id,category\nB001, dress\n\nB002,shirt\nB002,toptee\n")
    listing = read_products(path)
    assert listing.categories == {"B001": ("dress",), "B002": ("shirt", "toptee")} and listing.products == {}
    path.write_text("sub/x,coats\n")
    assert read_products(path).categories == {"sub/x": ("coats",)}


def test_given_beats_previous_beats_folder_beats_unknown() -> None:
    given = {"a": ("dress",)}
    previous = {"a": ("shirt",), "b": ("shirt",), "c": (UNKNOWN,), "coats/d": (UNKNOWN,)}
    ids = ["a", "b", "c", "coats/d", "e"]
    assert assign(ids, given, previous) == {
        "a": ("dress",),
        "b": ("shirt",),
        "c": (UNKNOWN,),
        "coats/d": ("coats",),
        "e": (UNKNOWN,),
    }
    assert merge({"a": ("x",)}, {"a": ("w",), "b": ("y",)}) == {"a": ("w", "x"), "b": ("y",)}


def categories_of(index: Path) -> dict[str, tuple[str, ...]]:
    return {item.id: item.categories for item in load_manifest(index).items}


def test_incremental_builds_keep_categories_and_apply_new_ones(tmp_path: Path) -> None:
    images = solid_images(tmp_path / "images", 6)
    (images / "coats").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(images / "coats" / "k1.png")
    index, encoder = tmp_path / "index", FakeEncoder()
    report = build_index(Path("unused"), images, index, encoder=encoder, categories={"c000": ("dress",)})
    assert report.categories == {"coats": 1, "dress": 1, UNKNOWN: 5}
    assert "categories: coats 1, dress 1, unknown 5" in report.summary()

    Image.new("RGB", (8, 8), (9, 9, 9)).save(images / "c100.png")  # new, no category source this time
    report = build_index(Path("unused"), images, index, encoder=encoder)
    assert report.encoded == 1
    labels = categories_of(index)
    assert labels["c000"] == ("dress",) and labels["coats/k1"] == ("coats",) and labels["c100"] == (UNKNOWN,)

    report = build_index(Path("unused"), images, index, encoder=encoder, categories={"c001": ("shirt", "toptee")})
    assert report.encoded == 0 and categories_of(index)["c001"] == ("shirt", "toptee")
    recommender = Recommender(encoder, open_catalog(index))
    try:
        assert recommender.categories() == {"coats": 1, "dress": 1, "shirt": 1, "toptee": 1, UNKNOWN: 5}
        total, page = recommender.items("toptee", 0, 10)
        assert total == 1 and [i.id for i in page] == ["c001"]
        total, page = recommender.items(None, 2, 3)
        assert total == 8 and [i.id for i in page] == ["c002", "c003", "c004"]
        with pytest.raises(UserError, match="unknown category 'coat'; this catalog has: coats, dress"):
            recommender.items("coat", 0, 10)
    finally:
        recommender.close()

    report = build_index(Path("unused"), images, index, encoder=encoder, rebuild=True)
    assert categories_of(index)["c000"] == (UNKNOWN,)  # a rebuild forgets what no source says


def test_an_index_from_before_categories_loads_as_unknown(tmp_path: Path) -> None:
    """A format-1 manifest (no digest, no product details) whose items have no categories."""
    index = tmp_path / "index"
    build_index(Path("unused"), solid_images(tmp_path / "images", 3), index, encoder=FakeEncoder())
    raw = json.loads((index / MANIFEST).read_text())
    raw.update(format=1)
    for name in ("digest", "embeddings_sha256"):
        del raw[name]
    del raw["backend"]["sha256"]  # format 1 named the hash in the file name only
    raw["items"] = [
        {k: v for k, v in item.items() if k not in ("categories", "product", "source")} for item in raw["items"]
    ]
    (index / MANIFEST).write_text(json.dumps(raw))
    assert set(categories_of(index).values()) == {(UNKNOWN,)}
    recommender = Recommender(FakeEncoder(), open_catalog(index))  # its files checked by the hash in their names
    assert len(recommender.recommend((tmp_path / "images" / "c001.png").read_bytes(), "x", 2)) == 2
    recommender.close()
