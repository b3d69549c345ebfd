"""Changing a catalog one item at a time: `fashionrec catalog add|update|remove`, the rules a change follows
(all or nothing, one writer at a time, seen by every reader of the folder), and how builds treat such items."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images

from fashionrec.cli.main import main
from fashionrec.index import Recommender, build_index
from fashionrec.index.folder_store import UPLOADS
from fashionrec.index.manifest import MANIFEST, Manifest, load_manifest
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import DuplicateItem, UnknownItem


def png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_index(tiny_ckpt: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edit")
    build_index(tiny_ckpt, demo_dir, root / "index", cache_dir=root / "cache", device="cpu")
    return root / "index"


def test_catalog_commands_add_update_and_remove_an_item(
    tiny_index: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    index = shutil.copytree(tiny_index, tmp_path / "index")
    (tmp_path / "new.png").write_bytes(png((200, 20, 20)))
    base = ["--index", str(index), "--id", "new/1", "--device", "cpu"]
    fields = ["--category", "dress", "--category", "sale", "--title", "Red dress", "--price", "19.90"]
    fields += ["--currency", "EUR", "--url", "https://shop.example/new-1", "--attribute", "material=cotton"]
    add = ["catalog", "add", *base, "--checkpoint", str(tiny_ckpt), "--image", str(tmp_path / "new.png"), *fields]
    assert main(add) == 0
    assert capsys.readouterr().out == f"added new/1 in {index} (49 items)\n"
    query = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(index), "--item", "D000001"]
    assert main([*query, "--text", "is red", "-k", "48", "--json", "--device", "cpu"]) == 0
    found = {r["id"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert found["new/1"] == {
        **found["new/1"],
        "categories": ["dress", "sale"],
        "title": "Red dress",
        "price": "19.90",
        "currency": "EUR",
        "url": "https://shop.example/new-1",
        "attributes": {"material": "cotton"},
    }
    assert Path(found["new/1"]["path"]).read_bytes() == png((200, 20, 20))  # kept inside the index folder
    first = vector_of(index, "new/1")

    assert main(["catalog", "update", *base, "--price", "17.50", "--title", ""]) == 0  # no image: no model needed
    item = next(i for i in load_manifest(index).items if i.id == "new/1")
    assert (item.product.price, item.product.title, item.categories) == ("17.50", None, ("dress", "sale"))
    (tmp_path / "blue.png").write_bytes(png((20, 20, 200)))
    image = ["--image", str(tmp_path / "blue.png"), "--checkpoint", str(tiny_ckpt)]
    assert main(["catalog", "update", *base, *image]) == 0
    assert not np.allclose(first, vector_of(index, "new/1"))  # encoded again
    blue = hashlib.sha256(png((20, 20, 200))).hexdigest()
    assert [p.name for p in (index / UPLOADS).iterdir()] == [f"{blue}.png"]  # the red one is gone

    assert main(["catalog", "remove", *base]) == 0
    assert "new/1" not in {i.id for i in load_manifest(index).items} and not list((index / UPLOADS).iterdir())
    capsys.readouterr()


def vector_of(index: Path, item_id: str) -> np.ndarray:
    manifest = load_manifest(index)
    return np.load(index / manifest.embeddings)[[item.id for item in manifest.items].index(item_id)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["add", "--id", "D000001", "--image", "{good}", "--checkpoint", "{ckpt}"], "already has an item with id"),
        (["update", "--id", "nope", "--title", "x"], "no catalog item with id 'nope'"),
        (["remove", "--id", "nope"], "no catalog item with id 'nope'"),
        (["update", "--id", "D000001", "--image", "{good}"], "needs the catalog's model"),
        (["add", "--id", "x", "--image", "{bad}", "--checkpoint", "{ckpt}"], "not a JPEG, PNG or WebP"),
        (["add", "--id", " ", "--image", "{good}", "--checkpoint", "{ckpt}"], "give the new item's id"),
    ],
)
def test_catalog_command_mistakes_are_one_line_and_change_nothing(
    argv: list[str], message: str, tiny_index: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "good.png").write_bytes(png((1, 2, 3)))
    (tmp_path / "bad.png").write_text("not an image")
    values = {"good": tmp_path / "good.png", "bad": tmp_path / "bad.png", "ckpt": tiny_ckpt}
    argv = [a.format(**values) for a in argv]
    before = (tiny_index / MANIFEST).read_bytes()
    assert main(["catalog", *argv, "--index", str(tiny_index), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert (tiny_index / MANIFEST).read_bytes() == before


@pytest.mark.parametrize(
    "flag, value, message", [("--price", "12,50", "unparsable price"), ("--url", "ftp://x", "http:// or https://")]
)
def test_catalog_command_fields_are_checked_when_the_command_line_is_read(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["catalog", "update", "--index", str(tmp_path), "--id", "x", flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.fixture
def fake_index(tmp_path: Path) -> tuple[Path, Path]:
    images = solid_images(tmp_path / "images", 6, size=8)
    build_index(Path("unused"), images, tmp_path / "index", encoder=FakeEncoder())
    return images, tmp_path / "index"


def test_a_failed_write_changes_nothing(fake_index: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up just as the new manifest is written: the catalog stays as it was, on disk and in the
    server that tried, and the next change clears what the failed one left."""
    _, index = fake_index
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    before = (index / MANIFEST).read_bytes()
    save = Manifest.save

    def full_disk(self: Manifest, folder: Path) -> None:
        raise OSError(28, "No space left on device", str(folder / MANIFEST))

    monkeypatch.setattr(Manifest, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        recommender.add_item({"id": "new", "title": "New"}, png((9, 9, 9)))
    assert (index / MANIFEST).read_bytes() == before
    assert recommender.catalog.count() == 6 and recommender.items(None, 0, 10)[0] == 6
    with pytest.raises(UnknownItem):
        recommender.catalog.item("new")
    monkeypatch.setattr(Manifest, "save", save)
    recommender.add_item({"id": "other"}, png((8, 8, 8)))
    manifest = load_manifest(index)
    assert [i.id for i in manifest.items if i.source == "upload"] == ["other"]
    assert {p.name for p in index.glob("embeddings-*.npy")} == {manifest.embeddings}
    assert [p.name for p in (index / UPLOADS).iterdir()] == [manifest.items[-1].path]
    recommender.close()


def test_a_change_through_one_server_is_seen_by_another_on_its_next_request(fake_index: tuple[Path, Path]) -> None:
    _, index = fake_index
    one, two = (Recommender(FakeEncoder(), open_catalog(index)) for _ in range(2))
    try:
        one.add_item({"id": "new", "category": "sale", "price": "5.00"}, png((250, 0, 0)))
        assert two.categories()["sale"] == 1
        matches = two.recommend(png((240, 5, 5)), "is red", 1)
        assert matches[0].id == "new" and matches[0].product.price == "5.00"
        two.update_item("new", {"price": "4.00"}, None)
        assert one.items("sale", 0, 1)[1][0].product.price == "4.00"
        two.remove_item("new")
        with pytest.raises(UnknownItem):
            one.image("new")
        with pytest.raises(DuplicateItem):
            one.add_item({"id": "c001"}, png((1, 1, 1)))
    finally:
        one.close()
        two.close()


def test_concurrent_writers_through_two_stores_lose_no_change(fake_index: tuple[Path, Path]) -> None:
    _, index = fake_index
    servers = [Recommender(FakeEncoder(), open_catalog(index)) for _ in range(2)]
    try:
        with ThreadPoolExecutor(4) as pool:
            added = [(servers[i % 2], {"id": f"n{i}"}, png((i * 20, 0, 0))) for i in range(8)]
            list(pool.map(lambda job: job[0].add_item(job[1], job[2]), added))
        assert {f"n{i}" for i in range(8)} <= {item.id for item in load_manifest(index).items}
        assert servers[0].items(None, 0, 1)[0] == servers[1].items(None, 0, 1)[0] == 14
    finally:
        for server in servers:
            server.close()


def test_builds_keep_items_added_one_by_one(fake_index: tuple[Path, Path]) -> None:
    """`fashionrec index` leaves them as they are (a file of the same id does not replace one), and a
    rebuild encodes them again from the image the catalog keeps."""
    images, index = fake_index
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    recommender.add_item({"id": "added", "title": "Added"}, png((3, 200, 3)))
    recommender.close()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(images / "added.png")  # a file with the same id
    report = build_index(Path("unused"), images, index, encoder=FakeEncoder())
    assert (report.items, report.encoded) == (7, 0)
    added = next(i for i in load_manifest(index).items if i.id == "added")
    assert added.source == "upload" and added.product.title == "Added"
    report = build_index(Path("unused"), images, index, encoder=FakeEncoder(), rebuild=True)
    assert (report.items, report.encoded) == (7, 7)
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    assert recommender.recommend(png((3, 190, 3)), "is green", 1)[0].id == "added"
    recommender.close()
