"""`fashionrec index --from-mongo-export`: a catalog of vectors encoded elsewhere, pinned to the checkpoint,
through the catalog-store interface: ranked as the catalog built from the same images, with its pictures found
by name or without pictures, and living alongside builds and items added one by one."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images

from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.index import Recommender, build_index
from fashionrec.index.manifest import MANIFEST, load_manifest
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import StoreOptions, UnknownItem
from fashionrec.index.vector_import import import_catalog

COUNT = 12


class OtherModel(FakeEncoder):
    fingerprint = "another-model"


def export_of(index: Path, out: Path, names: dict[str, str] | None = None, only: int | None = None) -> Path:
    """A mongoexport file of a built catalog: each item's vector scaled by its own factor (raw, unnormalised),
    named by its path (or `names[id]`), with an `_id`."""
    manifest = load_manifest(index)
    vectors = np.load(index / manifest.embeddings)
    with open(out, "w") as f:
        for n, (item, vector) in enumerate(list(zip(manifest.items, vectors, strict=True))[:only]):
            name = (names or {}).get(item.id, item.path)
            raw = (vector * (0.5 + n)).tolist()
            f.write(json.dumps({"_id": {"$oid": f"{n:024x}"}, "name": name, "features": raw}) + "\n")
    return out


def png(colour: tuple[int, int, int], size: int = 16, turn: bool = False) -> bytes:
    """A picture of one colour, not in the catalog (`turn`: a half-and-half one)."""
    image = Image.new("RGB", (size, size), colour)
    if turn:
        image.paste((255 - colour[0], colour[1], colour[2]), (0, 0, size // 2, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


QUERIES = [png((200, 30, 30)), png((20, 160, 60), turn=True), png((240, 240, 240))]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(images, built index, export of it) with FakeEncoder vectors."""
    root = tmp_path_factory.mktemp("fake_import")
    images = solid_images(root / "images", COUNT)
    build_index(Path("unused"), images, root / "built", encoder=FakeEncoder())
    return images, root / "built", export_of(root / "built", root / "export.json")


def rankings(index: Path | str, item_ids: tuple[str, ...] = (), options: StoreOptions | None = None) -> list:
    recommender = Recommender(FakeEncoder(), open_catalog(index, options))
    try:
        asked = [recommender.recommend(data, "x", 5) for data in QUERIES]
        asked += [recommender.recommend(None, "x", 5, item_id=item_id) for item_id in item_ids]
        return [[(m.id, round(m.score, 5)) for m in matches] for matches in asked]
    finally:
        recommender.close()


def test_without_images_the_vectors_rank_as_the_built_catalog_and_have_no_pictures(fake, tmp_path: Path) -> None:
    images, built, export = fake
    report = import_catalog(Path("unused"), export, tmp_path / "index", encoder=FakeEncoder())
    assert (report.items, report.imported, report.encoded, report.removed) == (COUNT, COUNT, 0, 0)
    assert "have no image (no --images)" in report.notes[-1]
    assert rankings(tmp_path / "index") == rankings(built)
    manifest = load_manifest(tmp_path / "index")
    model = manifest.model()
    assert (model.fingerprint, model.preprocess, model.dim) == ("fake-encoder", FakeEncoder.preprocess, 4)
    vectors = np.load(tmp_path / "index" / manifest.embeddings)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # normalised on import
    item = manifest.items[0]
    assert (item.id, item.path, item.source, item.sha256) == ("c000", "c000.png", "vector", "")
    catalog = open_catalog(tmp_path / "index")
    try:
        assert catalog.image_path(item) is None
        with pytest.raises(UnknownItem, match="'c000' has no image in this catalog"):
            catalog.image(item)
    finally:
        catalog.close()
    recommender = Recommender(FakeEncoder(), open_catalog(tmp_path / "index"))
    try:
        with pytest.raises(UserError, match="it cannot be a reference: upload a photo instead"):
            recommender.recommend(None, "x", 5, item_id="c000")
    finally:
        recommender.close()


def test_with_images_the_items_are_the_folders_files(fake, tmp_path: Path) -> None:
    """Found by name: shown, usable as references, and kept by a later build while their files are unchanged."""
    images, built, export = fake
    index = tmp_path / "index"
    import_catalog(Path("unused"), export, index, images=images, encoder=FakeEncoder())
    assert rankings(index, ("c001", "c007")) == rankings(built, ("c001", "c007"))
    assert load_manifest(index).items == load_manifest(built).items  # paths, sizes, times and hashes alike
    catalog = open_catalog(index)
    try:
        item = catalog.item("c003")
        assert catalog.image_path(item) == images.resolve() / "c003.png"
        assert catalog.image(item) == (images / "c003.png").read_bytes()
    finally:
        catalog.close()
    report = build_index(Path("unused"), images, index, encoder=FakeEncoder())
    assert (report.items, report.encoded, report.reused) == (COUNT, 0, COUNT)


def test_the_image_types_their_extractor_took_are_found_served_and_used(fake, tmp_path: Path) -> None:
    """BMP and TIFF (beside JPEG, PNG, WebP), in sub-folders: served with their media type, decoded as references."""
    images, built, _ = fake
    folder = tmp_path / "their_images"
    names = {"c000": "tops/c000.bmp", "c001": "tops/c001.tiff", "c002": "c002.jpeg", "c003": "c003.webp"}
    for item_id, name in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(images / f"{item_id}.png").save(folder / name)
    export = export_of(built, tmp_path / "export.json", names, only=4)
    import_catalog(Path("unused"), export, tmp_path / "index", images=folder, encoder=FakeEncoder())
    recommender = Recommender(FakeEncoder(), open_catalog(tmp_path / "index"))
    try:
        assert [recommender.image(i)[1] for i in ("tops/c000", "tops/c001", "c002", "c003")] == [
            "image/bmp", "image/tiff", "image/jpeg", "image/webp"
        ]  # fmt: skip
        assert recommender.image("tops/c001")[0] == (folder / "tops/c001.tiff").read_bytes()
        for item_id in ("tops/c000", "tops/c001"):
            matches = recommender.recommend(None, "x", 3, item_id=item_id)
            assert len(matches) == 3 and item_id not in {m.id for m in matches}
        assert recommender.categories() == {"tops": 2, "unknown": 2}  # the top folder, as a build gives
    finally:
        recommender.close()


def test_a_name_without_its_file_is_one_line_and_nothing_is_written(fake, tmp_path: Path) -> None:
    images, built, _ = fake
    export = export_of(built, tmp_path / "export.json", {"c004": "c004.jpg"})
    with pytest.raises(UserError, match=rf"export.json, line 5 \('c004.jpg'\): {images}/c004.jpg does not exist$"):
        import_catalog(Path("unused"), export, tmp_path / "index", images=images, encoder=FakeEncoder())
    assert not (tmp_path / "index").exists()


def test_builds_take_files_for_imported_items_and_keep_the_rest(fake, tmp_path: Path) -> None:
    """A file with an imported item's id gives it its picture; the others stay; a rebuild, which must encode
    every item, refuses in one line and writes nothing."""
    images, _, export = fake
    index = tmp_path / "index"
    import_catalog(Path("unused"), export, index, encoder=FakeEncoder())
    some = tmp_path / "some"
    some.mkdir()
    for name in ("c001.png", "c002.png"):
        shutil.copy(images / name, some / name)
    report = build_index(Path("unused"), some, index, encoder=FakeEncoder())
    assert (report.items, report.encoded, report.removed) == (COUNT, 2, 0)
    sources = {item.id: item.source for item in load_manifest(index).items}
    assert sources["c001"] == sources["c002"] == "folder" and sources["c003"] == "vector"
    before = (index / MANIFEST).read_bytes()
    with pytest.raises(UserError, match=r"holds 10 items imported without images \(e.g. 'c000'\)"):
        build_index(Path("unused"), some, index, encoder=FakeEncoder(), rebuild=True)
    assert (index / MANIFEST).read_bytes() == before


def test_an_import_replaces_the_catalog_but_keeps_items_added_one_by_one(fake, tmp_path: Path) -> None:
    images, built, export = fake
    index = tmp_path / "index"
    import_catalog(Path("unused"), export, index, images=images, encoder=FakeEncoder())
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    recommender.remove_item("c005")
    recommender.add_item({"id": "c005", "title": "Added"}, png((3, 200, 3)))
    recommender.close()
    half = export_of(built, tmp_path / "half.json", only=6)  # c000 ... c005
    report = import_catalog(Path("unused"), half, index, encoder=FakeEncoder())
    assert (report.items, report.imported, report.removed) == (6, 5, 6)
    assert any("line 6 ('c005.png') has the id of an item added one by one" in note for note in report.notes)
    items = {item.id: item for item in load_manifest(index).items}
    assert sorted(items) == [f"c{i:03d}" for i in range(6)]
    assert items["c005"].source == "upload" and items["c005"].product.title == "Added"
    assert items["c000"].source == "vector"


def test_another_models_catalog_is_replaced_only_with_rebuild(fake, tmp_path: Path) -> None:
    images, _, export = fake
    index = tmp_path / "index"
    build_index(Path("unused"), images, index, encoder=OtherModel())
    recommender = Recommender(OtherModel(), open_catalog(index))
    recommender.add_item({"id": "added"}, png((3, 200, 3)))
    recommender.close()
    with pytest.raises(UserError, match="was built with another checkpoint or preprocessing"):
        import_catalog(Path("unused"), export, index, encoder=FakeEncoder())
    report = import_catalog(Path("unused"), export, index, encoder=FakeEncoder(), rebuild=True)
    assert (report.items, report.imported, report.encoded) == (COUNT + 1, COUNT, 1)  # the upload encoded again
    assert load_manifest(index).model().fingerprint == "fake-encoder"


def test_a_qdrant_backed_folder_catalog_takes_an_import_alike(fake, tmp_path: Path, quick_folder: Path) -> None:
    _, built, export = fake
    options = StoreOptions(backend="qdrant", url=str(quick_folder), collection="imported")
    import_catalog(Path("unused"), export, tmp_path / "index", options=options, encoder=FakeEncoder())
    assert load_manifest(tmp_path / "index").backend["kind"] == "qdrant"
    assert rankings(tmp_path / "index") == rankings(built)


def test_a_database_catalog_takes_an_import_alike(fake, pg_url: str, catalog_name: str) -> None:
    """Items without images in PostgreSQL: ranked as in the built catalog, no picture, kept by a build."""
    images, built, export = fake
    options = StoreOptions(catalog=catalog_name)
    report = import_catalog(Path("unused"), export, pg_url, options=options, encoder=FakeEncoder())
    assert (report.items, report.imported, report.backend["kind"]) == (COUNT, COUNT, "postgres")
    assert rankings(pg_url, options=options) == rankings(built)
    catalog = open_catalog(pg_url, options)
    try:
        item = catalog.item("c000")
        assert (item.source, item.sha256, catalog.image_path(item)) == ("vector", "", None)
        with pytest.raises(UnknownItem, match="'c000' has no image in this catalog"):
            catalog.image(item)
    finally:
        catalog.close()
    some = images.parent / "some"
    some.mkdir(exist_ok=True)
    shutil.copy(images / "c001.png", some / "c001.png")
    report = build_index(Path("unused"), some, pg_url, encoder=FakeEncoder(), catalog=catalog_name)
    assert (report.items, report.encoded, report.removed) == (COUNT, 1, 0)  # the file gives c001 its picture
    assert rankings(pg_url, options=options) == rankings(built)


# ---- the command line, with the tiny model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_built(tiny_ckpt: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_import")
    build_index(tiny_ckpt, demo_dir, root / "built", cache_dir=root / "cache", device="cpu")
    return root / "built", export_of(root / "built", root / "export.json")


def recommend_json(checkpoint: Path, index: Path, capsys, *reference: str) -> dict:
    argv = ["recommend", "--checkpoint", str(checkpoint), "--index", str(index), *reference, "--text", "is red"]
    assert main([*argv, "-k", "10", "--json", "--device", "cpu"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def same_results(found: dict, expected: dict, paths: bool) -> None:
    """The same ids in the same order, scores within float rounding; image paths as built, or none."""
    assert [r["id"] for r in found["results"]] == [r["id"] for r in expected["results"]]
    for a, b in zip(found["results"], expected["results"], strict=True):
        assert abs(a["score"] - b["score"]) < 1e-5 and a["path"] == (b["path"] if paths else None)


def test_cli_import_with_and_without_images(tiny_ckpt: Path, demo_dir: Path, tiny_built, tmp_path: Path, capsys):
    built, export = tiny_built
    query = tmp_path / "query.png"
    Image.open(demo_dir / "D000002.png").transpose(Image.Transpose.ROTATE_90).save(query)
    expected = recommend_json(tiny_ckpt, built, capsys, "--image", str(query))
    by_item = recommend_json(tiny_ckpt, built, capsys, "--item", "T000004")
    for extra in ([], ["--images", str(demo_dir)]):
        index = tmp_path / f"index{len(extra)}"
        argv = ["index", "--checkpoint", str(tiny_ckpt), "--from-mongo-export", str(export), "--out", str(index)]
        assert main([*argv, *extra, "--device", "cpu"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"index {index}: 48 items (48 imported, 0 encoded, 0 unchanged, 0 removed)")
        assert ("have no image" in err) == (not extra)
        found = recommend_json(tiny_ckpt, index, capsys, "--image", str(query))
        same_results(found, expected, paths=bool(extra))
        if extra:
            same_results(recommend_json(tiny_ckpt, index, capsys, "--item", "T000004"), by_item, paths=True)
        else:
            argv = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(index), "--item", "T000004"]
            assert main([*argv, "--text", "is red", "--device", "cpu"]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: item 'T000004' has no image") and err.count("\n") == 1


def test_cli_vectors_of_another_length_are_one_line_and_nothing_is_written(
    tiny_ckpt: Path, fake, tmp_path: Path, capsys
) -> None:
    _, _, export = fake  # 4 features; the tiny model embeds in 128
    out = tmp_path / "index"
    code = main(["index", "--checkpoint", str(tiny_ckpt), "--from-mongo-export", str(export), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"error: {export}, line 1 ('c000.png'): 4 features, but the checkpoint {tiny_ckpt} embeds in 128" in err
    assert not out.exists()
