"""Building a PostgreSQL catalog from image files: everything a folder index records, incremental
updates that encode only what changed, one model per catalog, and builds killed half-way."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pg_fixtures import folder_records
from PIL import Image
from psycopg import sql
from rec_fixtures import FakeEncoder, brute_force, solid_images

from fashionrec.errors import UserError
from fashionrec.index.postgres import PostgresCatalog, StoreUnavailable, build_from_files


class CountingEncoder(FakeEncoder):
    """FakeEncoder that remembers what it encoded, and can run `hook(call_number)` before each call."""

    def __init__(self, hook=None) -> None:
        self.encoded: list[str] = []
        self.calls = 0
        self.hook = hook

    def encode_catalog(self, paths, batch_size):
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


class CountingWider(CountingEncoder, WiderModel):
    pass


def build(catalog, folder: Path, encoder, categories=None, **options):
    records, files = folder_records(folder, categories)
    return build_from_files(catalog, records, files, encoder, "ckpt", images_root=str(folder), **options)


def vectors_of(folder: Path, encoder=None) -> tuple[list[str], np.ndarray]:
    """The ids of a folder and their vectors, as the encoder makes them (the brute-force reference)."""
    _, files = folder_records(folder)
    return list(files), (encoder or FakeEncoder()).encode_catalog(files, 8)


def answers(catalog, queries: np.ndarray) -> list:
    return catalog.search(queries, 10)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return solid_images(tmp_path / "images", 24)


def test_a_build_holds_the_manifest_product_images_and_vectors(pg_catalog, images: Path) -> None:
    categories = {"c000": ("dress", "sale"), "c001": ("shirt",)}
    result = build(pg_catalog, images, FakeEncoder(), categories)
    assert (result.items, result.added, result.staged, result.index) == (24, 24, 24, "exact")
    info = pg_catalog.info()
    assert (info.fingerprint, info.preprocess, info.dim, info.items) == ("fake-encoder", FakeEncoder.preprocess, 4, 24)
    assert (info.checkpoint, info.images_root, info.version) == ("ckpt", str(images), result.version)
    records, files = folder_records(images, categories)
    assert pg_catalog.items() == records  # path, size, mtime_ns and sha256 as a folder index records them
    stored = pg_catalog.image("c000")
    assert stored.data == files["c000"].read_bytes() and stored.media_type == "image/png"
    assert pg_catalog.ids_with_content(stored.sha256) == ["c000"]
    assert pg_catalog.categories() == {"all": 22, "dress": 1, "sale": 1, "shirt": 1}
    ids, vectors = vectors_of(images)
    for query, hits in zip(vectors[:3], answers(pg_catalog, vectors[:3]), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)


def test_an_update_encodes_only_new_and_changed_images_and_drops_removed_ones(
    pg_catalog, images: Path, tmp_path: Path
) -> None:
    build(pg_catalog, images, FakeEncoder())
    Image.new("RGB", (48, 48), (1, 2, 3)).save(images / "c003.png")  # changed
    Image.new("RGB", (48, 48), (200, 100, 0)).save(images / "new.png")  # new
    (images / "c004.png").rename(images / "moved.png")  # same bytes, new id: its vector is reused
    (images / "c005.png").unlink()  # removed
    (images / "c006.png").touch()  # touched, same bytes
    encoder = CountingEncoder()
    result = build(pg_catalog, images, encoder, {"c007": ("sale",)})  # c007 changes category only
    assert sorted(encoder.encoded) == ["c003", "new"]
    assert (result.items, result.added, result.removed, result.staged) == (24, 2, 2, 2)
    assert result.updated == 3  # c003 (image), c006 (mtime), c007 (category)
    assert pg_catalog.item("c007").categories == ("sale",)
    ids, vectors = vectors_of(images)
    for query, hits in zip(vectors, answers(pg_catalog, vectors), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)
    assert pg_catalog.items() == folder_records(images, {"c007": ("sale",)})[0]

    again = CountingEncoder()
    result = build(pg_catalog, images, again, {"c007": ("sale",)})
    assert again.encoded == [] and (result.unchanged, result.updated) == (24, 0)


def test_another_model_or_preprocessing_is_refused_unless_rebuilt(pg_catalog, images: Path) -> None:
    build(pg_catalog, images, FakeEncoder())
    before = (pg_catalog.version(), pg_catalog.items())
    for other in (OtherModel(), OtherPreprocessing()):
        with pytest.raises(UserError, match="another checkpoint or preprocessing.*--rebuild"):
            build(pg_catalog, images, other)
    assert (pg_catalog.version(), pg_catalog.items()) == before

    encoder = CountingWider()
    result = build(pg_catalog, images, encoder, rebuild=True)
    assert len(encoder.encoded) == 24 and result.staged == 24  # nothing of the old model is reused
    info = pg_catalog.info()
    assert (info.fingerprint, info.dim) == ("wider-model", 6)
    ids, vectors = vectors_of(images, WiderModel())
    for query, hits in zip(vectors[:3], answers(pg_catalog, vectors[:3]), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)
    with pytest.raises(ValueError, match="dimensions"):
        pg_catalog.search(np.ones((1, 4), np.float32), 3)


def test_two_builds_of_one_catalog_cannot_run_at_once(pg_catalog, images: Path) -> None:
    build(pg_catalog, images, FakeEncoder())
    from pg_fixtures import stamp

    with pg_catalog.build(stamp(fingerprint="fake-encoder", preprocess=FakeEncoder.preprocess)):
        with pytest.raises(UserError, match="another build .* is running"):
            build(pg_catalog, images, FakeEncoder())
    build(pg_catalog, images, FakeEncoder())  # the lock went with the first build's connection


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
    moment: str, pg_catalog, pg_url: str, images: Path, tmp_path: Path
) -> None:
    build(pg_catalog, images, FakeEncoder())
    queries = vectors_of(images)[1][:5]
    before = (pg_catalog.version(), pg_catalog.items(), answers(pg_catalog, queries))
    change_catalog(images)

    if moment == "between staged batches":
        # The second batch's encoding ends the session: the first batch (4 images) is already committed.
        killer = CountingEncoder(hook=lambda call: call == 2 and build_sessions(pg_url, terminate=True))
        with pytest.raises(StoreUnavailable, match="unavailable"):
            build(pg_catalog, images, killer, stage_size=4)
        reused = 4
    else:
        # Every image staged; the last transaction has bumped the version and waits for the items table.
        errors: list[BaseException] = []

        def run() -> None:
            try:
                build(pg_catalog, images, FakeEncoder())
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

    assert (pg_catalog.version(), pg_catalog.items(), answers(pg_catalog, queries)) == before
    finisher = CountingEncoder()
    result = build(pg_catalog, images, finisher)
    assert len(finisher.encoded) == 11 - reused  # what the killed build staged is not encoded again
    assert result.items == 33 and result.version == before[0] + 1
    ids, vectors = vectors_of(images)
    for query, hits in zip(vectors, answers(pg_catalog, vectors), strict=True):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)
    fresh = PostgresCatalog.open(pg_url, pg_catalog.tables.schema + "_fresh")
    try:
        build(fresh, images, FakeEncoder())
        assert fresh.items() == pg_catalog.items()
    finally:
        fresh.drop()
        fresh.close()
