"""Building a PostgreSQL catalog from image files with `build_index`: everything a folder index records,
incremental updates that encode only what changed, one model per catalog, and builds killed half-way."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image
from psycopg import sql
from rec_fixtures import FakeEncoder, brute_force, solid_images

from fashionrec.errors import UserError
from fashionrec.index import build
from fashionrec.index.build import build_index
from fashionrec.index.edit import CatalogEditor
from fashionrec.index.items import Item, Product
from fashionrec.index.scan import file_sha256, scan_images
from fashionrec.index.store import StoreUnavailable


class CountingEncoder(FakeEncoder):
    """FakeEncoder that remembers what it encoded, and can run `hook(call_number)` before each call."""

    def __init__(self, hook=None) -> None:
        self.encoded: list[str] = []
        self.calls = 0
        self.hook = hook

    def encode_catalog(self, paths, batch_size):
        if paths:
            self.calls += 1
            if self.hook is not None:
                self.hook(self.calls)
        self.encoded += list(paths)
        return super().encode_catalog(paths, batch_size)


class OtherModel(FakeEncoder):
    fingerprint = "another-model"


class OtherPreprocessing(FakeEncoder):
    preprocess = {"key": "cropped", "config": {"crop": "yolo"}}


class WiderModel(FakeEncoder):
    """Another model, with 6-dimensional vectors."""

    fingerprint = "wider-model"
    dim = 6

    @staticmethod
    def _vector(image: Image.Image) -> np.ndarray:
        return np.concatenate([FakeEncoder._vector(image), [0.0, 0.0]]).astype(np.float32)

    def encode_catalog(self, paths, batch_size):
        vectors = [self._vector(Image.open(p)) for p in paths.values()]
        return np.stack(vectors) if vectors else np.empty((0, 6), np.float32)


class CountingWider(CountingEncoder, WiderModel):
    pass


def index(store, folder: Path, encoder, categories=None, **options):
    """`build_index` into the catalog `store` names, as `fashionrec index --out URL --catalog-name` does."""
    name = store.tables.schema
    return build_index(Path("ckpt"), folder, store.url, encoder=encoder, catalog=name, categories=categories, **options)


def folder_items(folder: Path, categories: dict[str, tuple[str, ...]] | None = None) -> list[Item]:
    """The items a folder build records for each image file (what a folder index's manifest holds)."""
    items = []
    for item_id, path in scan_images(folder).items():
        stat = path.stat()
        names = (categories or {}).get(item_id, ("unknown",))
        rel = path.relative_to(folder).as_posix()
        items.append(Item(item_id, rel, stat.st_size, stat.st_mtime_ns, file_sha256(path), names, Product()))
    return items


def vectors_of(folder: Path, encoder=None) -> tuple[list[str], np.ndarray]:
    """The ids of a folder and their vectors, as the encoder makes them (the brute-force reference)."""
    files = scan_images(folder)
    return list(files), (encoder or FakeEncoder()).encode_catalog(files, 8)


def answers(catalog, queries: np.ndarray) -> list:
    return [[(hit.item.id, hit.score) for hit in hits] for hits in catalog.search(queries, 10)]


def assert_brute_force(catalog, folder: Path, encoder=None) -> None:
    ids, vectors = vectors_of(folder, encoder)
    for query, hits in zip(vectors, answers(catalog, vectors), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return solid_images(tmp_path / "images", 24)


def test_a_build_holds_the_manifest_product_images_and_vectors(pg_catalog, images: Path) -> None:
    categories = {"c000": ("dress", "sale"), "c001": ("shirt",)}
    report = index(pg_catalog, images, FakeEncoder(), categories)
    assert (report.items, report.encoded, report.backend["search"]) == (24, 24, "exact")
    pg_catalog.refresh()
    model = pg_catalog.model()
    assert (model.fingerprint, model.preprocess, model.dim) == ("fake-encoder", FakeEncoder.preprocess, 4)
    state = pg_catalog.state()
    assert (model.checkpoint, state.images_root) == (str(Path("ckpt").resolve()), str(images.resolve()))
    # path, size, mtime_ns, sha256 and categories as a folder index records them
    assert state.items == folder_items(images, categories)
    item = pg_catalog.item("c000")
    assert pg_catalog.image(item) == (images / "c000.png").read_bytes() and pg_catalog.image_path(item) is None
    assert pg_catalog.ids_with_content(item.sha256) == ["c000"]
    assert pg_catalog.categories() == {"dress": 1, "sale": 1, "shirt": 1, "unknown": 22}
    assert_brute_force(pg_catalog, images)


def test_an_update_encodes_only_new_and_changed_images_and_drops_removed_ones(pg_catalog, images: Path) -> None:
    index(pg_catalog, images, FakeEncoder())
    Image.new("RGB", (48, 48), (1, 2, 3)).save(images / "c003.png")  # changed
    Image.new("RGB", (48, 48), (200, 100, 0)).save(images / "new.png")  # new
    (images / "c004.png").rename(images / "moved.png")  # same bytes, new id: its vector is reused
    (images / "c005.png").unlink()  # removed
    (images / "c006.png").touch()  # touched, same bytes
    encoder = CountingEncoder()
    report = index(pg_catalog, images, encoder, {"c007": ("sale",)})  # c007 changes category only
    assert sorted(encoder.encoded) == ["c003", "new"]
    assert (report.items, report.encoded, report.removed) == (24, 2, 2)
    assert pg_catalog.item("c007").categories == ("sale",)
    assert_brute_force(pg_catalog, images)
    assert pg_catalog.items() == folder_items(images, {"c007": ("sale",)})

    again = CountingEncoder()
    version = pg_catalog.state()
    report = index(pg_catalog, images, again, {"c007": ("sale",)})
    assert again.encoded == [] and report.encoded == 0 and pg_catalog.state() == version


def test_another_model_or_preprocessing_is_refused_unless_rebuilt(pg_catalog, images: Path) -> None:
    index(pg_catalog, images, FakeEncoder())
    before = pg_catalog.state()
    for other in (OtherModel(), OtherPreprocessing()):
        with pytest.raises(UserError, match="another checkpoint or preprocessing.*--rebuild"):
            index(pg_catalog, images, other)
    assert pg_catalog.state() == before

    encoder = CountingWider()
    report = index(pg_catalog, images, encoder, rebuild=True)
    assert len(encoder.encoded) == 24 and report.encoded == 24  # nothing of the old model is reused
    pg_catalog.refresh()
    assert (pg_catalog.model().fingerprint, pg_catalog.model().dim) == ("wider-model", 6)
    assert_brute_force(pg_catalog, images, WiderModel())
    with pytest.raises(ValueError, match="dimensions"):
        pg_catalog.search(np.ones((1, 4), np.float32), 3)


def test_two_builds_of_one_catalog_cannot_run_at_once(pg_catalog, pg_open, images: Path) -> None:
    index(pg_catalog, images, FakeEncoder())
    other = pg_open()
    other.staged("x", "y")  # a build's first step: it now holds the catalog's build lock
    with pytest.raises(UserError, match="another build .* is running"):
        index(pg_catalog, images, FakeEncoder())
    other.close()
    index(pg_catalog, images, FakeEncoder())  # the lock went with the first build's connection


def build_sessions(url: str, waiting_for_a_lock: bool = False, terminate: bool = False) -> int:
    """How many build sessions there are (waiting for a lock); with `terminate`, end them, as a crash or a
    lost network would. Asked on a connection of its own: a transaction sees one snapshot of the activity."""
    what = "pg_terminate_backend(pid)" if terminate else "*"
    waiting = "AND wait_event_type = 'Lock'" if waiting_for_a_lock else ""
    query = f"SELECT count({what}) FROM pg_stat_activity WHERE application_name = 'fashionrec build' {waiting}"
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


def change_catalog(images: Path) -> None:
    for i in range(10):
        Image.new("RGB", (48, 48), (10 * i, 250, 3)).save(images / f"new{i}.png")
    Image.new("RGB", (48, 48), (7, 7, 7)).save(images / "c002.png")
    (images / "c010.png").unlink()


@pytest.mark.parametrize("moment", ["between staged batches", "inside the final transaction"])
def test_a_killed_build_leaves_the_previous_catalog_answering_and_the_next_one_finishes_it(
    moment: str, pg_catalog, pg_open, pg_url: str, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index(pg_catalog, images, FakeEncoder())
    queries = vectors_of(images)[1][:5]
    before = (pg_catalog.state(), answers(pg_catalog, queries))
    change_catalog(images)

    if moment == "between staged batches":
        # The second batch's encoding ends the session: the first batch (4 images) is already committed.
        monkeypatch.setattr(build, "STAGE_SIZE", 4)
        killer = CountingEncoder(hook=lambda call: call == 2 and build_sessions(pg_url, terminate=True))
        with pytest.raises(StoreUnavailable, match="unavailable"):
            index(pg_open(), images, killer)
        reused = 4
    else:
        # Every image staged; the last transaction has bumped the version and waits for the items table.
        errors: list[BaseException] = []

        def run() -> None:
            try:
                index(pg_open(), images, FakeEncoder())
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=run)
        with psycopg.connect(pg_url) as holder:  # one transaction, rolled back when the block ends
            holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(pg_catalog.tables.items))
            thread.start()
            deadline = time.monotonic() + 30
            while not build_sessions(pg_url, waiting_for_a_lock=True):
                assert time.monotonic() < deadline and thread.is_alive(), errors
                time.sleep(0.05)
            assert build_sessions(pg_url, terminate=True) == 1
            holder.rollback()
        thread.join(30)
        assert len(errors) == 1 and isinstance(errors[0], StoreUnavailable), errors
        reused = 11

    assert (pg_catalog.state(), answers(pg_catalog, queries)) == before
    finisher = CountingEncoder()
    report = index(pg_catalog, images, finisher)
    assert len(finisher.encoded) == 11 - reused  # what the killed build staged is not encoded again
    assert report.items == 33
    assert_brute_force(pg_catalog, images)
    fresh = pg_open(catalog=pg_catalog.tables.schema + "_fresh")
    try:
        index(fresh, images, FakeEncoder())
        assert fresh.items() == pg_catalog.items()
    finally:
        fresh.drop()


def test_builds_keep_items_added_one_by_one(pg_catalog, pg_open, images: Path) -> None:
    """The folder store's policy: `fashionrec index` leaves them as they are (a file of the same id does not
    replace one), and a rebuild encodes them again from the image the catalog keeps."""
    index(pg_catalog, images, FakeEncoder())
    editor = CatalogEditor(pg_open(), FakeEncoder().encode_images)
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (3, 200, 3)).save(picture, "PNG")
    editor.store.refresh()
    editor.add({"id": "added", "title": "Added", "category": "new"}, picture.getvalue())
    Image.new("RGB", (8, 8), (0, 0, 0)).save(images / "added.png")  # a file with the same id
    encoder = CountingEncoder()
    report = index(pg_catalog, images, encoder)
    assert (report.items, report.encoded, encoder.encoded) == (25, 0, [])
    added = pg_catalog.item("added")
    assert (added.source, added.product.title, added.categories) == ("upload", "Added", ("new",))
    assert pg_catalog.image(added) == picture.getvalue()
    report = index(pg_catalog, images, FakeEncoder(), rebuild=True)
    assert (report.items, report.encoded) == (25, 25)
    query = FakeEncoder().encode_images([Image.new("RGB", (8, 8), (3, 190, 3))])
    assert pg_catalog.search(query, 1)[0][0].item.id == "added"
