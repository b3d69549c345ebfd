"""The preprocessing cache: every image is decoded, cropped and resized once, so that a training epoch
only reads uint8 arrays from memory-mapped files.

Layout, under `<cache_dir>/v<FORMAT_VERSION>-<config.key()>/` (one folder per preprocessing settings):

    settings.json                 the settings, for people
    build.lock                    held by a build, so two builders never write at once
    chunks/NNNNNN.pixels.npy      uint8 [n, 2, 3, S, S]: the whole image and the crop of n images, stored
                                  channels-first as the model takes them, so reading needs no transpose
    chunks/NNNNNN.meta.safetensors  box [n, 4], landmarks [n, 14, 2], landmark_mask [n, 14]
    chunks/NNNNNN.json            the chunk's ids and file fingerprints, written last: it commits the chunk

Chunks are never changed once written, so readers need no lock. An image whose file changed (name, size
or mtime) is processed again into a new chunk, and the newest chunk that holds an id wins.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy
from tqdm import tqdm

from fashionrec.atomic import atomic_write, atomic_write_json
from fashionrec.data.images import load_image
from fashionrec.data.jsonfile import read_json
from fashionrec.data.landmarks import NUM_LANDMARKS
from fashionrec.data.preprocess import PreprocessConfig, PreprocessedImage, Preprocessor
from fashionrec.errors import UserError

FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 2**20  # pixels held in memory before a chunk is written (and lost at most on a kill)

Fingerprint = list[str | int]  # [file name, size, mtime_ns]: a changed file gets a different one


@dataclass(frozen=True)
class _Entry:
    chunk: str
    row: int
    fingerprint: Fingerprint


class ImageCache:
    """Preprocessed images of one `PreprocessConfig`, shared by every split and run on the same data.

    `build(paths)` brings the cache up to date for those files and makes them readable through `get`;
    only ids checked by `build` in this object are served, so a stale entry never is.
    """

    def __init__(self, cache_dir: str | Path, config: PreprocessConfig, *, chunk_images: int | None = None) -> None:
        self.config = config
        self.root = Path(cache_dir) / f"v{FORMAT_VERSION}-{config.key()}"
        side = config.image_size
        self.chunk_images = chunk_images or max(1, CHUNK_BYTES // (2 * side * side * 3))
        self._entries: dict[str, tuple[str, int]] = {}
        self._open: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self._pid = os.getpid()

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        """DataLoader workers get the index but open their own memory maps."""
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def build(self, paths: Mapping[str, str | Path], *, progress: bool = True, workers: int | None = None) -> int:
        """Process the images that are new or changed since they were cached; returns how many.
        An interrupted build keeps the images it finished, so the next one resumes after them.
        `workers` threads decode and preprocess (PIL and the backends release the GIL); default: the CPUs,
        up to 8.
        """
        fingerprints = {i: _fingerprint(Path(p)) for i, p in paths.items()}
        with self._locked():
            stored = self._read_index()
            todo = [i for i, fp in fingerprints.items() if i not in stored or stored[i].fingerprint != fp]
            if todo:
                threads = workers or min(8, os.cpu_count() or 1)
                self._write([(i, Path(paths[i]), fingerprints[i]) for i in todo], threads, progress)
                stored = self._read_index()
        self._entries.update((i, (stored[i].chunk, stored[i].row)) for i in paths)
        return len(todo)

    def get(self, image_id: str) -> PreprocessedImage:
        """The cached result of one image (copies, so callers may keep or change them)."""
        try:
            chunk, row = self._entries[image_id]
        except KeyError:
            raise KeyError(f"image {image_id!r} is not in the cache; build() it first") from None
        pixels, meta = self._chunk(chunk)
        return PreprocessedImage(  # HWC views of channels-first copies
            image=np.array(pixels[row, 0]).transpose(1, 2, 0),
            crop=np.array(pixels[row, 1]).transpose(1, 2, 0),
            box=meta["box"][row].copy(),
            landmarks=meta["landmarks"][row].copy(),
            landmark_mask=meta["landmark_mask"][row].copy(),
        )

    @property
    def _chunks_dir(self) -> Path:
        return self.root / "chunks"

    def _chunk(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Open a chunk on first use in this process: memory maps must not cross a fork."""
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if name not in self._open:
            pixels = np.load(self._chunks_dir / f"{name}.pixels.npy", mmap_mode="r", allow_pickle=False)
            meta = safetensors.numpy.load_file(str(self._chunks_dir / f"{name}.meta.safetensors"))
            self._open[name] = (pixels, meta)
        return self._open[name]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._chunks_dir.mkdir(parents=True, exist_ok=True)
        with open(self.root / "build.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (self.root / "settings.json").exists():
                    settings = {"format_version": FORMAT_VERSION, "key": self.config.key()}
                    atomic_write_json(self.root / "settings.json", {**settings, **self.config.to_dict()})
                self._remove_uncommitted()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_uncommitted(self) -> None:
        """Drop what a killed build left: chunk files without their manifest, and temp files."""
        for path in self._chunks_dir.iterdir():
            name = path.name.split(".", 1)[0]
            if not name or not (self._chunks_dir / f"{name}.json").exists():
                path.unlink()

    def _read_index(self) -> dict[str, _Entry]:
        index: dict[str, _Entry] = {}
        for manifest in sorted(self._chunks_dir.glob("[0-9]*.json")):
            data = read_json(manifest)
            for row, (image_id, fp) in enumerate(zip(data["ids"], data["fingerprints"], strict=True)):
                index[image_id] = _Entry(manifest.stem, row, fp)
        return index

    def _write(self, todo: list[tuple[str, Path, Fingerprint]], workers: int, progress: bool) -> None:
        """Preprocess in a thread pool, store in order; on any error keep what was stored before it."""
        local = threading.local()

        def process(job: tuple[str, Path, Fingerprint]) -> PreprocessedImage:
            if not hasattr(local, "preprocessor"):  # backends such as MediaPipe are not thread-safe
                local.preprocessor = Preprocessor(self.config)
            return local.preprocessor.process(load_image(job[1]))

        numbers = [int(p.stem) for p in self._chunks_dir.glob("[0-9]*.json")]
        first = max(numbers, default=0) + 1
        writer = _ChunkWriter(self._chunks_dir, first, self.chunk_images, self.config.image_size)
        bar = tqdm(total=len(todo), desc="preprocessing images", unit="img", file=sys.stderr, disable=not progress)
        with bar, ThreadPoolExecutor(workers) as pool:
            try:
                for (image_id, _, fingerprint), item in zip(todo, pool.map(process, todo), strict=True):
                    writer.add(image_id, fingerprint, item)
                    bar.update()
            finally:
                pool.shutdown(cancel_futures=True)
                writer.flush()  # keep the finished images even when the build is interrupted


class _ChunkWriter:
    """Buffers processed images and writes them as numbered, immutable chunks."""

    def __init__(self, directory: Path, number: int, capacity: int, side: int) -> None:
        self.directory, self.number, self.capacity = directory, number, capacity
        self.pixels = np.empty((capacity, 2, 3, side, side), np.uint8)
        self.box = np.empty((capacity, 4), np.float32)
        self.landmarks = np.empty((capacity, NUM_LANDMARKS, 2), np.float32)
        self.mask = np.empty((capacity, NUM_LANDMARKS), np.bool_)
        self.ids: list[str] = []
        self.fingerprints: list[Fingerprint] = []

    def add(self, image_id: str, fingerprint: Fingerprint, item: PreprocessedImage) -> None:
        n = len(self.ids)
        self.pixels[n, 0], self.pixels[n, 1] = item.image.transpose(2, 0, 1), item.crop.transpose(2, 0, 1)
        self.box[n], self.landmarks[n], self.mask[n] = item.box, item.landmarks, item.landmark_mask
        self.ids.append(image_id)
        self.fingerprints.append(fingerprint)
        if len(self.ids) == self.capacity:
            self.flush()

    def flush(self) -> None:
        n = len(self.ids)
        if n == 0:
            return
        name = f"{self.number:06d}"
        pixels = self.pixels[:n]
        atomic_write(self.directory / f"{name}.pixels.npy", lambda f: np.save(f, pixels, allow_pickle=False))
        meta = {"box": self.box[:n], "landmarks": self.landmarks[:n], "landmark_mask": self.mask[:n]}
        blob = safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in meta.items()})
        atomic_write(self.directory / f"{name}.meta.safetensors", lambda f: f.write(blob))
        atomic_write_json(self.directory / f"{name}.json", {"ids": self.ids, "fingerprints": self.fingerprints})
        self.number += 1
        self.ids, self.fingerprints = [], []


def _fingerprint(path: Path) -> Fingerprint:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    return [path.name, stat.st_size, stat.st_mtime_ns]
