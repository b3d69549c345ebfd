"""A folder catalog's files are as trustworthy as checkpoints: each is checked against its sha256 when read.
Damage (1 KiB of random bytes at a file's start or in its middle) is refused in one line, or repaired by
`fashionrec index` from the images, and never searched."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images

from fashionrec.cli.main import main
from fashionrec.index import Recommender, build_index
from fashionrec.index.manifest import MANIFEST, load_manifest
from fashionrec.index.registry import open_catalog
from fashionrec.index.store import CatalogDamaged
from fashionrec.serve.app import create_app

ITEMS = 200  # enough for every file to be over 2 KiB, so 1 KiB in the middle stays inside it
FILES = ("manifest", "embeddings", "faiss")


def damage(path: Path, where: str) -> None:
    """1 KiB of random bytes written over the file's start or its middle."""
    data = bytearray(path.read_bytes())
    assert len(data) > 2048, f"{path.name} is too small to damage in its middle"
    start = 0 if where == "start" else len(data) // 2 - 512
    data[start : start + 1024] = np.random.default_rng(len(data)).bytes(1024)
    path.write_bytes(bytes(data))


def file_of(index: Path, which: str) -> Path:
    manifest = load_manifest(index)
    return index / {"manifest": MANIFEST, "embeddings": manifest.embeddings, "faiss": manifest.backend["file"]}[which]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(images, index) of ITEMS solid-colour images; tests damage a copy of the index."""
    root = tmp_path_factory.mktemp("integrity")
    images = solid_images(root / "images", ITEMS, size=8)
    build_index(Path("unused"), images, root / "index", encoder=FakeEncoder(), categories={"c000": ("featured",)})
    return images, root / "index"


@pytest.fixture
def index(catalog: tuple[Path, Path], tmp_path: Path) -> Path:
    return shutil.copytree(catalog[1], tmp_path / "index")


def answers(index: Path, images: Path) -> list[list[tuple[str, float]]]:
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    try:
        references = [(images / f"c{i:03d}.png").read_bytes() for i in (1, 50, 150)]
        return [[(m.id, round(m.score, 6)) for m in recommender.recommend(ref, "is red", 10)] for ref in references]
    finally:
        recommender.close()


@pytest.mark.parametrize("where", ["start", "middle"])
@pytest.mark.parametrize("which", ["manifest", "faiss"])
def test_a_damaged_file_is_refused_in_one_line_when_opened(index: Path, which: str, where: str) -> None:
    path = file_of(index, which)
    damage(path, where)
    with pytest.raises(CatalogDamaged) as caught:
        open_catalog(index)
    message = str(caught.value)
    assert str(path) in message and "damaged" in message and "\n" not in message
    assert message.endswith("rebuild it with `fashionrec index`")


@pytest.mark.parametrize("where", ["start", "middle"])
@pytest.mark.parametrize("which", FILES)
def test_index_rebuilds_what_is_damaged(catalog: tuple[Path, Path], index: Path, which: str, where: str) -> None:
    images, original = catalog
    before = answers(original, images)
    damage(file_of(index, which), where)
    report = build_index(Path("unused"), images, index, encoder=FakeEncoder(), categories={"c000": ("featured",)})
    assert len(report.notes) == 1 and "damaged" in report.notes[0] and "\n" not in report.notes[0]
    # Damaged vectors or manifest: every item encoded again; a damaged ANN index: rebuilt from good vectors.
    assert report.encoded == (0 if which == "faiss" else ITEMS)
    assert answers(index, images) == before
    assert load_manifest(index).embeddings == load_manifest(original).embeddings  # the same vectors, bit for bit


@pytest.mark.parametrize("where", ["start", "middle"])
def test_damaged_vectors_are_never_reused_by_a_live_change(index: Path, catalog: tuple[Path, Path], where: str) -> None:
    images, _ = catalog
    damage(file_of(index, "embeddings"), where)
    recommender = Recommender(FakeEncoder(), open_catalog(index))  # serving needs only the manifest and FAISS
    try:
        assert len(recommender.recommend((images / "c001.png").read_bytes(), "is red", 5)) == 5
        with pytest.raises(CatalogDamaged, match=r"embeddings-.*\.npy is damaged"):
            recommender.add_item({"id": "new"}, (images / "c002.png").read_bytes())
        assert recommender.catalog.count() == ITEMS
    finally:
        recommender.close()


def test_a_server_keeps_its_version_when_a_new_one_is_damaged(catalog: tuple[Path, Path], tmp_path: Path) -> None:
    """A rebuilt index whose FAISS file is damaged is not taken: the server answers from what it had and
    reports the damage on /health; the next good version is taken by itself."""
    source, original = catalog
    images = shutil.copytree(source, tmp_path / "images")
    index = shutil.copytree(original, tmp_path / "index")
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    with TestClient(create_app(recommender)) as client:
        query = {"files": {"image": ("q.png", (images / "c007.png").read_bytes())}, "data": {"text": "x", "k": "5"}}
        before = client.post("/recommend", **query).json()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(images / "new.png")
        build_index(Path("unused"), images, index, encoder=FakeEncoder(), categories={"c000": ("featured",)})
        damage(file_of(index, "faiss"), "middle")
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["items"] == ITEMS
        assert "faiss-" in health["problems"][0] and "damaged" in health["problems"][0]
        assert client.post("/recommend", **query).json() == before
        build_index(Path("unused"), images, index, encoder=FakeEncoder(), categories={"c000": ("featured",)})
        health = client.get("/health").json()
        assert (health["status"], health["items"], health["problems"]) == ("ok", ITEMS + 1, [])
    recommender.close()


class UnnormalisedEncoder(FakeEncoder):
    """Vectors three times too long: what damage that slips past every hash would look like."""

    def encode_catalog(self, paths, batch_size):
        return 3 * super().encode_catalog(paths, batch_size)


def test_a_score_no_unit_vectors_can_give_is_damage(catalog: tuple[Path, Path], tmp_path: Path) -> None:
    images, _ = catalog
    build_index(Path("unused"), images, tmp_path / "index", encoder=UnnormalisedEncoder())
    recommender = Recommender(UnnormalisedEncoder(), open_catalog(tmp_path / "index"))
    try:
        with pytest.raises(CatalogDamaged, match=r"the score 2\.9\d*, impossible for unit vectors"):
            recommender.recommend((images / "c001.png").read_bytes(), "is red", 5)
        with TestClient(create_app(recommender)) as client:
            files = {"image": ("q.png", (images / "c001.png").read_bytes())}
            response = client.post("/recommend", files=files, data={"text": "x"})
        assert response.status_code == 503 and "impossible for unit vectors" in response.json()["error"]
    finally:
        recommender.close()


def test_a_damaged_uploaded_image_is_refused(index: Path, catalog: tuple[Path, Path]) -> None:
    images, _ = catalog
    recommender = Recommender(FakeEncoder(), open_catalog(index))
    try:
        picture = io.BytesIO()
        Image.effect_noise((64, 64), 50).convert("RGB").save(picture, format="PNG")
        item = recommender.add_item({"id": "added"}, picture.getvalue())
        damage(index / "images" / item.path, "middle")
        with pytest.raises(CatalogDamaged, match=r"images/.*\.png is damaged"):
            recommender.recommend(None, "is red", 5, item_id="added")
        with TestClient(create_app(recommender)) as client:
            assert client.get("/items/added/image").status_code == 503
    finally:
        recommender.close()


def test_the_cli_refuses_damage_in_one_line_and_index_repairs_it(
    tiny_ckpt: Path, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The issue's case: 1 KiB in the middle of faiss-*.index used to rank damaged rows first (scores 1e30)."""
    index = tmp_path / "index"
    build = ["index", "--checkpoint", str(tiny_ckpt), "--images", str(demo_dir), "--out", str(index)]
    build += ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    query = ["recommend", "--checkpoint", str(tiny_ckpt), "--index", str(index), "--item", "D000001"]
    query += ["--text", "is red", "--json", "--device", "cpu"]
    assert main(build) == 0 and main(query) == 0
    before = capsys.readouterr().out.split("\n", 1)[1]
    path = file_of(index, "faiss")
    damage(path, "middle")
    assert main(query) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is damaged") and err.count("\n") == 1
    assert main(build) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: ") and "0 encoded" in captured.out
    assert main(query) == 0 and capsys.readouterr().out.endswith(before)
