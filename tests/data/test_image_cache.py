"""The preprocessing cache: same output as preprocessing directly, reuse, invalidation, resumed and
concurrent builds, safe file formats, and reading from DataLoader workers."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from PIL import Image
from torch.utils.data import DataLoader

import fashionrec
import fashionrec.data.cache as cache_module
from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import GalleryDataset
from fashionrec.data.images import load_image
from fashionrec.data.preprocess import PreprocessConfig, Preprocessor
from fashionrec.errors import UserError

CONFIG = PreprocessConfig(image_size=32)


@pytest.fixture
def images(demo_data: Path, tmp_path: Path) -> dict[str, Path]:
    """A private copy of 12 demo images (tests change files)."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = {}
    for source in sorted((demo_data / "images").glob("*.png"))[:12]:
        paths[source.stem] = Path(shutil.copy2(source, folder))
    return paths


def assert_same(a, b) -> None:
    for field in ("image", "crop", "box", "landmarks", "landmark_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_cache_serves_what_the_preprocessor_makes(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    assert cache.build(images, progress=False, workers=3) == 12
    assert len(cache) == 12 and all(i in cache for i in images)
    preprocessor = Preprocessor(CONFIG)
    for image_id, path in images.items():
        assert_same(cache.get(image_id), preprocessor.process(load_image(path)))
    with pytest.raises(KeyError, match="not in the cache"):
        cache.get("nope")


def test_an_image_takes_301198_bytes_at_224_px(images: dict[str, Path], tmp_path: Path) -> None:
    """docs/reproduce.md's cache size: the whole image and the crop, 2 x 3 x 224 x 224 uint8 = 301,056 bytes,
    and 142 bytes of box, landmarks and their mask."""
    cache = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=224))
    cache.build(dict(list(images.items())[:2]), progress=False)
    pixels = np.load(cache.root / "chunks" / "000001.pixels.npy", mmap_mode="r")
    meta = safetensors.numpy.load_file(str(cache.root / "chunks" / "000001.meta.safetensors"))
    assert pixels.shape == (2, 2, 3, 224, 224) and pixels.dtype == np.uint8
    assert pixels[0].nbytes + sum(values[0].nbytes for values in meta.values()) == 301_198


def test_later_runs_reuse_the_cache(images: dict[str, Path], tmp_path: Path) -> None:
    first = ImageCache(tmp_path / "cache", CONFIG)
    first.build(images, progress=False)
    again = ImageCache(tmp_path / "cache", CONFIG)
    assert again.build(images, progress=False) == 0
    for image_id in images:
        assert_same(again.get(image_id), first.get(image_id))


def test_only_ids_checked_by_build_are_served(images: dict[str, Path], tmp_path: Path) -> None:
    ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False)
    reader = ImageCache(tmp_path / "cache", CONFIG)
    some = dict(list(images.items())[:3])
    assert reader.build(some, progress=False) == 0
    assert len(reader) == 3 and list(images)[3] not in reader


def test_changed_mtime_or_size_is_reprocessed(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG)
    cache.build(images, progress=False)
    touched, redrawn = list(images)[:2]
    os.utime(images[touched], ns=(1_000_000_000, 1_000_000_000))
    Image.new("RGB", (40, 40), (10, 200, 10)).save(images[redrawn])  # new size and content
    assert cache.build(images, progress=False) == 2
    green = cache.get(redrawn).image
    assert (green[..., 1] == 200).all() and (green[..., 0] == 10).all()  # the new picture, not the stale one
    assert ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False) == 0


def test_changed_settings_use_a_separate_cache(images: dict[str, Path], tmp_path: Path) -> None:
    small = ImageCache(tmp_path / "cache", CONFIG)
    small.build(images, progress=False)
    large = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=40))
    assert large.root != small.root
    assert large.build(images, progress=False) == 12
    assert large.get(list(images)[0]).image.shape == (40, 40, 3)
    uncropped = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=32, crop="none"))
    assert uncropped.build(images, progress=False) == 12
    assert ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False) == 0


def test_interrupted_build_resumes_where_it_stopped(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_process = Preprocessor.process
    calls = []

    def failing_process(self, image):
        if len(calls) == 7:
            raise RuntimeError("power cut")
        calls.append(1)
        return real_process(self, image)

    monkeypatch.setattr(Preprocessor, "process", failing_process)
    with pytest.raises(RuntimeError, match="power cut"):
        ImageCache(tmp_path / "cache", CONFIG, chunk_images=3).build(images, progress=False, workers=1)
    monkeypatch.setattr(Preprocessor, "process", real_process)
    resumed = ImageCache(tmp_path / "cache", CONFIG, chunk_images=3)
    assert resumed.build(images, progress=False) == 12 - 7
    preprocessor = Preprocessor(CONFIG)
    for image_id, path in images.items():
        assert_same(resumed.get(image_id), preprocessor.process(load_image(path)))


def test_threaded_build_keeps_everything_before_the_failure(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = list(images.values())[9]

    def load(path: Path) -> Image.Image:
        if path == broken:
            raise UserError(f"cannot decode image {path}")
        return load_image(path)

    monkeypatch.setattr(cache_module, "load_image", load)
    with pytest.raises(UserError, match="cannot decode"):
        ImageCache(tmp_path / "cache", CONFIG, chunk_images=4).build(images, progress=False, workers=4)
    monkeypatch.undo()
    assert ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False) == 12 - 9


def test_leftovers_of_a_killed_build_are_removed(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG)
    cache.build(dict(list(images.items())[:4]), progress=False)
    chunks = cache.root / "chunks"
    np.save(chunks / "000002.pixels.npy", np.zeros((1, 2, 32, 32, 3), np.uint8))  # no manifest: uncommitted
    (chunks / ".000003.json.abc.tmp").write_text("{")
    assert cache.build(images, progress=False) == 8
    assert sorted(p.name for p in chunks.iterdir()) == [
        f"00000{n}.{kind}" for n in (1, 2) for kind in ("json", "meta.safetensors", "pixels.npy")
    ]


def test_cache_files_are_safe_formats(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    files = [p for p in cache.root.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".npy", ".safetensors", ".lock"}
    assert (cache.root / "build.lock").stat().st_size == 0
    for path in files:
        if path.suffix == ".npy":
            assert np.load(path, allow_pickle=False).dtype == np.uint8
        if path.suffix == ".safetensors":
            assert set(safetensors.numpy.load_file(str(path))) == {"box", "landmarks", "landmark_mask"}


def test_dataloader_workers_read_the_cache(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    ids = list(images)
    expected = [cache.get(i) for i in ids]  # memory maps opened here first: workers must not reuse them
    loader = DataLoader(GalleryDataset(ids, cache), batch_size=4, num_workers=2)
    batches = list(loader)
    images_out = torch.cat([b["image"] for b in batches])
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(12))
    for item, image in zip(expected, images_out, strict=True):
        assert torch.equal(image, torch.from_numpy(item.image).permute(2, 0, 1))


BUILD_SCRIPT = """
import sys
from pathlib import Path
from fashionrec.data.cache import ImageCache
from fashionrec.data.preprocess import PreprocessConfig
paths = {Path(p).stem: Path(p) for p in sys.argv[2:]}
print(ImageCache(sys.argv[1], PreprocessConfig(image_size=32)).build(paths, progress=False))
"""


@pytest.mark.slow
def test_two_processes_building_at_once_share_the_work(demo_data: Path, tmp_path: Path) -> None:
    paths = [str(p) for p in sorted((demo_data / "images").glob("*.png"))[:80]]
    env = {**os.environ, "PYTHONPATH": str(Path(fashionrec.__file__).parents[1])}
    command = [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path / "cache"), *paths]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert counts == [0, 80]
    cache = ImageCache(tmp_path / "cache", CONFIG)
    assert cache.build({Path(p).stem: Path(p) for p in paths}, progress=False) == 0


def test_unreadable_or_vanished_image_is_a_user_error(images: dict[str, Path], tmp_path: Path) -> None:
    first, second = list(images)[:2]
    images[first].write_bytes(b"not a picture")
    with pytest.raises(UserError, match=f"cannot decode image {images[first]}"):
        ImageCache(tmp_path / "cache", CONFIG).build({first: images[first]}, progress=False)
    images[second].unlink()
    with pytest.raises(UserError, match=f"image file not found: {images[second]}$"):
        ImageCache(tmp_path / "cache", CONFIG).build({second: images[second]}, progress=False)


def damage(path: Path, offset: int, size: int) -> None:
    """Overwrite `size` bytes at `offset` (negative: from the middle) with random bytes, in place."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if offset < 0 else offset
    data[start : start + size] = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:  # in place, as a stray write or a bad disk would
        f.write(data)


@pytest.fixture
def clean(images: dict[str, Path], tmp_path: Path) -> dict[str, object]:
    """What a fresh build of every image holds, to compare a repaired cache with."""
    reference = ImageCache(tmp_path / "clean", CONFIG, chunk_images=5)
    reference.build(images, progress=False)
    return {i: reference.get(i) for i in images}


@pytest.mark.parametrize(
    "file, offset, size",
    [
        ("pixels.npy", -1, 1024),  # pixel data: loads fine, values wrong
        ("pixels.npy", 0, 64),  # the .npy header
        ("meta.safetensors", 0, 16),  # the safetensors header
        ("meta.safetensors", -1, 8),  # box and landmark values
    ],
)
def test_a_damaged_chunk_is_reported_and_rebuilt(
    images: dict[str, Path], tmp_path: Path, clean: dict, capsys, file: str, offset: int, size: int
) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    damage(cache.root / "chunks" / f"000002.{file}", offset, size)
    capsys.readouterr()
    again = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    assert again.build(images, progress=False) == 5  # the damaged chunk's images, and only those
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "000002" in lines[0] and f"{file} does not match its checksum" in lines[0]
    for image_id in images:
        assert_same(again.get(image_id), clean[image_id])
    assert ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False) == 0


def test_a_damaged_chunk_reports_only_the_images_processed_again(
    images: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """A build that needs 3 of a damaged chunk's 12 images processes those 3, and says so."""
    ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False)
    chunk = tmp_path / "cache" / ImageCache(tmp_path / "cache", CONFIG).root.name / "chunks" / "000001"
    damage(chunk.with_name("000001.pixels.npy"), -1, 1024)
    capsys.readouterr()
    some = dict(list(images.items())[:3])
    assert ImageCache(tmp_path / "cache", CONFIG).build(some, progress=False) == 3
    assert capsys.readouterr().err == (
        f"cache chunk {chunk}: pixels.npy does not match its checksum (the file is damaged); "
        "3 of its 12 images are processed again now (the others when a command needs them)\n"
    )
    assert ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False) == 9


def test_an_unreadable_manifest_is_reported_and_its_chunk_rebuilt(
    images: dict[str, Path], tmp_path: Path, clean: dict, capsys
) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    (cache.root / "chunks" / "000001.json").write_text('{"ids": ["a"')
    capsys.readouterr()
    again = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    assert again.build(images, progress=False) == 5
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "000001: its manifest is unreadable" in lines[0]
    for image_id in images:
        assert_same(again.get(image_id), clean[image_id])


def test_a_damaged_chunk_whose_images_are_gone_is_a_user_error(images: dict[str, Path], tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    damage(cache.root / "chunks" / "000001.pixels.npy", -1, 1024)
    gone = list(images)[0]
    images[gone].unlink()
    with pytest.raises(UserError, match=f"image file not found: {images[gone]}$"):
        ImageCache(tmp_path / "cache", CONFIG).build(images, progress=False)


def test_copies_trust_what_build_checked_and_recheck_changed_files(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    real_crc = cache_module._crc32_file
    monkeypatch.setattr(cache_module, "_crc32_file", lambda path: pytest.fail(f"{path} summed again"))
    worker = pickle.loads(pickle.dumps(cache))  # what a DataLoader worker gets
    first = list(images)[0]
    worker.get(first)  # opens chunk 1 without summing it
    monkeypatch.setattr(cache_module, "_crc32_file", real_crc)
    damage(cache.root / "chunks" / "000002.pixels.npy", -1, 1024)  # after build, while in use
    worker = pickle.loads(pickle.dumps(cache))
    with pytest.raises(UserError, match="000002: pixels.npy does not match its checksum.*run the command again"):
        worker.get(list(images)[5])


def test_chunks_without_checksums_are_adopted_with_a_note(
    images: dict[str, Path], tmp_path: Path, clean: dict, capsys
) -> None:
    cache = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    cache.build(images, progress=False)
    manifests = sorted((cache.root / "chunks").glob("*.json"))
    for path in manifests:  # as the previous version wrote them
        data = json.loads(path.read_text())
        del data["crc32"]
        path.write_text(json.dumps(data))
    damage(cache.root / "chunks" / "000003.pixels.npy", 0, 64)  # a broken header is still found
    capsys.readouterr()
    assert ImageCache(tmp_path / "cache", CONFIG, chunk_images=5).build(images, progress=False) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "000003: cannot be read" in lines[0]
    assert "recorded checksums for 2 chunks written without them" in lines[1]
    assert all("crc32" in json.loads(p.read_text()) for p in sorted((cache.root / "chunks").glob("*.json")))
    damage(cache.root / "chunks" / "000001.pixels.npy", -1, 1024)  # now detected like any other
    again = ImageCache(tmp_path / "cache", CONFIG, chunk_images=5)
    assert again.build(images, progress=False) == 5
    assert "000001: pixels.npy does not match its checksum" in capsys.readouterr().err
    for image_id in images:
        assert_same(again.get(image_id), clean[image_id])
