"""Index build, incremental update and query on demo data with the real tiny model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_fixtures import tiny_checkpoint

from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.index import Recommender, build_index
from fashionrec.index.manifest import load_manifest
from fashionrec.index.store import UnknownItem


@pytest.fixture(scope="module")
def built(tiny_ckpt: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A FAISS index of a copy of the demo images (copied so update tests may change files)."""
    root = tmp_path_factory.mktemp("built")
    images = shutil.copytree(demo_dir, root / "images")
    report = build_index(tiny_ckpt, images, root / "index", cache_dir=root / "cache", device="cpu")
    return root, images, report


def embeddings(index: Path) -> tuple[list[str], np.ndarray]:
    manifest = load_manifest(index)
    return [i.id for i in manifest.items], np.load(index / manifest.embeddings)


def test_results_are_the_brute_force_ranking_without_the_reference(built, tiny_ckpt: Path) -> None:
    root, images, report = built
    assert report.items == report.encoded == len(list(images.iterdir()))
    ids, vectors = embeddings(root / "index")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    recommender = Recommender.open(tiny_ckpt, root / "index", device="cpu")
    try:
        reference, text = images / "D000001.png", "is red with long sleeves"
        matches = recommender.recommend(reference.read_bytes(), text, 8)
        prepared = recommender.encoder.prepare_query(Image.open(reference).convert("RGB"), text)
        query = recommender.encoder.encode_queries([prepared])[0]
    finally:
        recommender.close()
    order = [ids[r] for r in np.argsort(-(vectors @ query), kind="stable") if ids[r] != "D000001"][:8]
    assert [m.id for m in matches] == order
    scores = dict(zip(ids, vectors @ query, strict=True))
    np.testing.assert_allclose([m.score for m in matches], [scores[i] for i in order], rtol=1e-4, atol=1e-6)
    assert all(m.path == images / f"{m.id}.png" for m in matches)


def test_second_run_encodes_only_new_and_changed_files(built, tiny_ckpt: Path) -> None:
    root, images, _ = built
    ids_before, vectors_before = embeddings(root / "index")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(images / "new.png")  # new
    Image.new("RGB", (64, 64), (200, 10, 30)).save(images / "D000002.png")  # changed
    os.utime(images / "D000003.png", ns=(1, 1))  # touched only: same bytes
    (images / "D000004.png").unlink()  # removed
    (images / "D000005.png").rename(images / "renamed.png")  # same bytes, another id: not encoded again
    report = build_index(tiny_ckpt, images, root / "index", cache_dir=root / "cache", device="cpu")
    assert (report.encoded, report.removed, report.items) == (2, 2, len(ids_before))
    ids, vectors = embeddings(root / "index")
    assert "new" in ids and "D000004" not in ids
    before = dict(zip(ids_before, vectors_before, strict=True))
    before["renamed"] = before["D000005"]
    for item_id, vector in zip(ids, vectors, strict=True):
        if item_id not in ("new", "D000002"):
            np.testing.assert_array_equal(vector, before[item_id])
    assert not np.allclose(dict(zip(ids, vectors, strict=True))["D000002"], before["D000002"])
    # The incremental result equals encoding everything from scratch.
    fresh = build_index(tiny_ckpt, images, root / "fresh", cache_dir=root / "cache", device="cpu")
    assert fresh.encoded == report.items
    fresh_ids, fresh_vectors = embeddings(root / "fresh")
    assert fresh_ids == ids
    np.testing.assert_allclose(fresh_vectors, vectors, atol=1e-5)
    assert len(list((root / "index").glob("embeddings-*.npy"))) == 1  # the old build's files are gone


def test_another_checkpoint_is_refused_for_queries_and_updates(built, tmp_path: Path) -> None:
    root, images, _ = built
    other = tiny_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(UserError, match="was built with checkpoint .* not this one"):
        Recommender.open(other, root / "index", device="cpu")
    with pytest.raises(UserError, match="pass --rebuild"):
        build_index(other, images, root / "index", cache_dir=root / "cache", device="cpu")
    copy = shutil.copytree(root / "index", tmp_path / "index")
    report = build_index(other, images, copy, cache_dir=root / "cache", device="cpu", rebuild=True)
    assert report.encoded == report.items
    Recommender.open(other, copy, device="cpu").close()


def test_qdrant_backend_ranks_like_faiss(built, tiny_ckpt: Path, tmp_path: Path) -> None:
    root, images, _ = built
    build_index(
        tiny_ckpt,
        images,
        tmp_path / "q",
        backend="qdrant",
        url=str(tmp_path / "qdrant"),
        collection="demo",
        cache_dir=root / "cache",
        device="cpu",
    )
    reference = (images / "D000001.png").read_bytes()
    results = []
    for index in (root / "index", tmp_path / "q"):
        recommender = Recommender.open(tiny_ckpt, index, device="cpu")
        results.append(recommender.recommend(reference, "is blue", 10))
        recommender.close()
    assert [m.id for m in results[0]] == [m.id for m in results[1]]
    np.testing.assert_allclose([m.score for m in results[0]], [m.score for m in results[1]], rtol=1e-4)


def test_cli_index_and_recommend(built, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, images, _ = built
    code = main(
        [
            "index",
            "--checkpoint",
            str(tiny_ckpt),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "i"),
            "--cache-dir",
            str(root / "cache"),
            "--device",
            "cpu",
            "--approx-threshold",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "48 encoded" in out and "recall_at_10" in out  # IVF was tried and measured
    code = main(
        [
            "recommend",
            "--checkpoint",
            str(tiny_ckpt),
            "--index",
            str(tmp_path / "i"),
            "--image",
            str(images / "S000001.png"),
            "--text",
            "is black",
            "-k",
            "3",
            "--json",
            "--device",
            "cpu",
        ]
    )
    results = json.loads(capsys.readouterr().out)["results"]
    assert code == 0 and len(results) == 3 and "S000001" not in [r["id"] for r in results]
    assert all(Path(r["path"]).is_file() for r in results)


@pytest.mark.parametrize("what", ["index", "checkpoint", "image"])
def test_cli_missing_input_is_one_line_error(
    what: str, built, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, images, _ = built
    paths = {"index": root / "index", "checkpoint": tiny_ckpt, "image": images / "S000001.png"}
    paths[what] = tmp_path / "missing"
    code = main(
        [
            "recommend",
            "--checkpoint",
            str(paths["checkpoint"]),
            "--index",
            str(paths["index"]),
            "--image",
            str(paths["image"]),
            "--text",
            "is red",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "missing" in err


def test_training_checkpoint_brings_its_preprocessing_and_the_same_fingerprint(
    built, tiny_ckpt: Path, tmp_path: Path
) -> None:
    import torch

    from fashionrec.model import load_model

    root, images, _ = built
    model = load_model(tiny_ckpt)
    pt = tmp_path / "optimized_model.pt"
    torch.save(
        {
            "model_state_dict": model.state_dict(),
            "model_config": model.config.to_dict(),
            "tokenizer": model.tokenizer.to_json(),
            "train_config": {"crop": "none", "epochs": 3},
        },
        pt,
    )
    build_index(pt, images, tmp_path / "index", cache_dir=root / "cache", device="cpu")
    assert load_manifest(tmp_path / "index").preprocess["config"]["crop"] == "none"
    # Same weights in another file format: the index built from the directory accepts it.
    Recommender.open(pt, root / "index", device="cpu").close()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--index", "{missing}"], "index folder not found"),
        (["index", "--images", "{images}", "--out", "{tmp}/out", "--backend", "qdrant"], "needs --url and"),
        (["index", "--images", "{missing}", "--out", "{tmp}/out"], "images folder not found"),
    ],
)
def test_cli_bad_settings_are_one_line_errors(
    argv: list[str], message: str, built, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, images, _ = built
    values = {"missing": tmp_path / "missing", "images": images, "tmp": tmp_path}
    argv = [a.format(**values) for a in argv] + ["--checkpoint", str(tiny_ckpt), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_an_unreadable_catalog_image_is_named_in_a_user_error(built, tiny_ckpt: Path, tmp_path: Path) -> None:
    root, images, _ = built
    catalog = shutil.copytree(images, tmp_path / "images")
    (catalog / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="broken.png"):
        build_index(tiny_ckpt, catalog, tmp_path / "index", cache_dir=root / "cache", device="cpu")
    assert not (tmp_path / "index" / "manifest.json").exists()


@pytest.fixture(scope="module")
def labelled(built, tiny_ckpt: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo images indexed with the categories of the demo's FashionIQ split files."""
    root, images, _ = built
    out = tmp_path_factory.mktemp("labelled") / "index"
    code = main(
        ["index", "--checkpoint", str(tiny_ckpt), "--images", str(demo_dir), "--out", str(out)]
        + ["--cache-dir", str(root / "cache"), "--device", "cpu", "--path-file", str(demo_dir.parent)]
    )
    assert code == 0
    return out


def test_a_catalog_item_as_reference_within_its_category(labelled: Path, demo_dir: Path, tiny_ckpt: Path) -> None:
    ids, vectors = embeddings(labelled)
    dresses = {i for i in ids if i.startswith("D")}
    recommender = Recommender.open(tiny_ckpt, labelled, device="cpu")
    try:
        assert recommender.categories() == {"dress": 16, "shirt": 16, "toptee": 16}
        text = "has long sleeves"
        matches = recommender.recommend(None, text, 8, item_id="D000003", category="dress")
        # The same picture uploaded gives the same query vector.
        uploaded = recommender.recommend((demo_dir / "D000003.png").read_bytes(), text, 8, category="dress")
        prepared = recommender.encoder.prepare_query(Image.open(demo_dir / "D000003.png").convert("RGB"), text)
        query = recommender.encoder.encode_queries([prepared])[0]
        everything = recommender.recommend(None, text, 47, item_id="D000003")
    finally:
        recommender.close()
    order = [ids[r] for r in np.argsort(-(vectors @ query), kind="stable") if ids[r] != "D000003"]
    assert [m.id for m in matches] == [i for i in order if i in dresses][:8]
    assert [m.id for m in uploaded] == [m.id for m in matches]
    assert all(m.categories == ("dress",) for m in matches)
    assert [m.id for m in everything] == order  # the whole catalog but the reference itself


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"item_id": "nope"}, UnknownItem, "no catalog item with id 'nope'"),
        ({"item_id": "../D000001"}, UnknownItem, "no catalog item"),
        ({"item_id": "D000001", "category": "coat"}, UserError, "unknown category 'coat'; this catalog has: dress"),
        ({"item_id": "D000001", "image": b"x"}, UserError, "not both"),
        ({}, UserError, "give a reference"),
    ],
)
def test_bad_item_or_category_queries(labelled: Path, tiny_ckpt: Path, kwargs, error, message: str) -> None:
    recommender = Recommender.open(tiny_ckpt, labelled, device="cpu")
    try:
        with pytest.raises(error, match=message):
            recommender.recommend(kwargs.pop("image", None), "is red", 5, **kwargs)
    finally:
        recommender.close()


def test_cli_recommend_from_an_item_in_a_category(
    labelled: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(labelled), "--device", "cpu"]
    code = main([*base, "--item", "S000002", "--text", "is red", "-k", "4", "--category", "shirt", "--json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0 and body["item"] == "S000002" and body["category"] == "shirt"
    assert len(body["results"]) == 4 and all(r["categories"] == ["shirt"] for r in body["results"])
    assert "S000002" not in [r["id"] for r in body["results"]]
    for extra, message in ((["--item", "nope"], "no catalog item"), (["--item", "S000002", "--category", "x"], "x'")):
        assert main([*base, *extra, "--text", "is red"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert main([*base, "--item", "S000002", "--image", str(labelled / "manifest.json"), "--text", "is red"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_index_built_by_fashionrec_0_1_keeps_working(tiny_ckpt: Path, demo_dir: Path, tmp_path: Path) -> None:
    """0.1 hashed the preprocessing with the model config into the fingerprint: such an index still answers
    and updates with the same checkpoint, and another model is still refused."""
    from fashionrec.index.model_encoder import fingerprint
    from fashionrec.model import load_model

    images = shutil.copytree(demo_dir, tmp_path / "images")
    index = tmp_path / "index"
    build_index(tiny_ckpt, images, index, cache_dir=tmp_path / "cache", device="cpu")
    manifest = load_manifest(index)
    model = load_model(tiny_ckpt)
    former = fingerprint(model, with_preprocess=True)
    assert former != manifest.checkpoint["fingerprint"]
    manifest.checkpoint["fingerprint"] = former
    manifest.save(index)

    Recommender.open(tiny_ckpt, index, device="cpu").close()
    assert build_index(tiny_ckpt, images, index, cache_dir=tmp_path / "cache", device="cpu").encoded == 0

    manifest = load_manifest(index)
    manifest.checkpoint["fingerprint"] = former[::-1]
    manifest.save(index)
    with pytest.raises(UserError, match="was built with checkpoint"):
        Recommender.open(tiny_ckpt, index, device="cpu")


def test_cli_products_reach_the_recommend_table_and_json(
    built, tiny_ckpt: Path, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _, _ = built
    products = tmp_path / "products.csv"
    products.write_text(
        "id,category,title,price,currency,url,colour\n"
        "D000001,dress|sale,Red dress,19.90,EUR,https://shop.example/d1,red\n"
        "D000002,dress,Blue dress,5,,,\n"
    )
    index = tmp_path / "index"
    build = ["index", "--checkpoint", str(tiny_ckpt), "--images", str(demo_dir), "--out", str(index)]
    build += ["--cache-dir", str(root / "cache"), "--device", "cpu"]
    assert main([*build, "--products", str(products)]) == 0
    assert "dress 2, sale 1, unknown 46" in capsys.readouterr().out  # 48 demo images, no folders
    query = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(index), "--item", "D000003"]
    query += ["--text", "is red", "--category", "sale", "--device", "cpu"]
    assert main(query) == 0
    header, row, *rest = capsys.readouterr().out.splitlines()
    assert header.split() == ["rank", "id", "categories", "title", "price", "score"] and rest == []
    assert row.split()[:6] == ["1", "D000001", "dress,sale", "Red", "dress", "19.90"] and " EUR  " in row
    assert header.index("price") == row.index("19.90")  # columns line up
    assert main([*query, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result == {
        "id": "D000001",
        "path": str((demo_dir / "D000001.png").resolve()),
        "score": result["score"],
        "categories": ["dress", "sale"],
        "title": "Red dress",
        "price": "19.90",
        "currency": "EUR",
        "url": "https://shop.example/d1",
        "attributes": {"colour": "red"},
    }

    old = tmp_path / "categories.csv"  # what --categories took: id,category rows, no header
    old.write_text("D000001,coats\n")
    assert main([*build, "--categories", str(old)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "note: --categories is the old spelling of --products\n"
    kept = next(i for i in load_manifest(index).items if i.id == "D000001")
    assert kept.categories == ("coats",) and kept.product.title == "Red dress"  # details kept, categories given
    bad = tmp_path / "bad.csv"
    bad.write_text("id,price\nD000001,19,90\n")
    assert main([*build, "--products", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: line 2: expected 2 cells (id,price), got 'D000001,19,90'\n"


def test_an_index_built_before_preprocessing_version_2_is_refused_with_the_rebuild_line(
    built, tiny_ckpt: Path, tmp_path: Path
) -> None:
    """Its manifest recorded four settings and their version-1 key; the model's preprocessing now has a resize
    rule and pixel statistics too, and version 2."""
    import hashlib

    from fashionrec.index.manifest import MANIFEST, digest

    root, images, _ = built
    index = shutil.copytree(root / "index", tmp_path / "index")
    raw = json.loads((index / MANIFEST).read_text())
    old = {"image_size": 64, "crop": "foreground", "landmarks": "none", "yolo_weights": None}
    key = hashlib.sha256(json.dumps({**old, "version": 1}, sort_keys=True).encode()).hexdigest()[:16]
    raw["preprocess"] = {"key": key, "config": old}
    raw.pop("digest")
    (index / MANIFEST).write_text(json.dumps({**raw, "digest": digest(raw)}))  # a whole manifest, as it was written
    with pytest.raises(
        UserError, match="built with other preprocessing .*rebuild it with `fashionrec index --rebuild`"
    ):
        Recommender.open(tiny_ckpt, index, device="cpu")
    with pytest.raises(UserError, match="pass --rebuild to re-encode every image"):
        build_index(tiny_ckpt, images, index, cache_dir=root / "cache", device="cpu")
