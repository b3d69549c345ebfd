"""The preprocessing cache: every image is decoded, cropped and resized once, so that a training epoch
only reads uint8 arrays from memory-mapped files.

Layout, under `<cache_dir>/v<FORMAT_VERSION>-<config.key()>/` (one folder per preprocessing settings):

    settings.json                 the settings, for people
    build.lock                    held by a build, so two builders never write at once
    chunks/NNNNNN.pixels.npy      uint8 [n, 2, 3, S, S]: the whole image and the crop of n images, stored
                                  channels-first as the model takes them, so reading needs no transpose
    chunks/NNNNNN.meta.safetensors  box [n, 4], landmarks [n, 14, 2], landmark_mask [n, 14]; with
                                  `--landmarks original` also crop_landmarks [n, 14, 2], crop_landmark_mask
                                  [n, 14] and source_size [n, 2] (width, height of each picture)
    chunks/NNNNNN.json            the chunk's ids, file fingerprints and the CRC-32 of its two data files,
                                  written last: it commits the chunk

Chunks are never changed once written, so readers need no lock. An image whose file changed (name, size
or mtime) is processed again into a new chunk, and the newest chunk that holds an id wins.

Integrity: `build` checks the checksums of every chunk it is about to serve, once per object, and a
damaged chunk is reported in one line, removed and rebuilt from the image files. Copies of the object
(DataLoader workers) trust a chunk it checked while the files' inode, size, mtime and ctime are the
same, so reading stays as fast as without checksums; a file changed since is checked again when a
process first opens it. CRC-32 because the threat is accidental damage (disk errors, stray writes,
truncation), not forgery, and it hashes at several GB/s. Chunks written before checksums existed are
checked for structure and get their checksums recorded, with a one-line note.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError
from tqdm import tqdm

from fashionrec.atomic import atomic_write, atomic_write_json
from fashionrec.data.images import DECODE_THREADS, load_image
from fashionrec.data.jsonfile import read_json
from fashionrec.data.landmarks import NUM_LANDMARKS
from fashionrec.data.landmarks_original import EXTRA_FIELDS, ORIGINAL
from fashionrec.data.preprocess import PreprocessConfig, PreprocessedImage, Preprocessor
from fashionrec.errors import UserError

FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 2**20  # pixels held in memory before a chunk is written (and lost at most on a kill)

CHECKED = ("pixels.npy", "meta.safetensors")  # the data files of a chunk, each with a checksum
META_FIELDS = {  # per-image arrays stored beside the pixels: shape and dtype
    "box": ((4,), np.float32),
    "landmarks": ((NUM_LANDMARKS, 2), np.float32),
    "landmark_mask": ((NUM_LANDMARKS,), np.bool_),
    "crop_landmarks": ((NUM_LANDMARKS, 2), np.float32),
    "crop_landmark_mask": ((NUM_LANDMARKS,), np.bool_),
    "source_size": ((2,), np.int32),
}

Fingerprint = list[str | int]  # [file name, size, mtime_ns]: a changed file gets a different one
Identity = tuple[int, ...]  # inode, size, mtime_ns, ctime_ns of a chunk's data files: a write changes it


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
        extra = EXTRA_FIELDS if config.landmarks == ORIGINAL else ()
        self.meta_keys = ("box", "landmarks", "landmark_mask", *extra)
        self._entries: dict[str, tuple[str, int]] = {}
        self._open: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self._pid = os.getpid()
        self._verified: dict[str, Identity] = {}  # chunks whose checksums matched, as their files were then

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        """DataLoader workers get the index and the verified chunks, but open their own memory maps."""
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
            stored = self._checked_index(fingerprints)
            todo = [i for i, fp in fingerprints.items() if i not in stored or stored[i].fingerprint != fp]
            if todo:
                threads = workers or DECODE_THREADS
                self._write([(i, Path(paths[i]), fingerprints[i]) for i in todo], threads, progress)
                stored = _index(self._read_manifests())
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
            **{key: meta[key][row].copy() for key in self.meta_keys},
        )

    @property
    def _chunks_dir(self) -> Path:
        return self.root / "chunks"

    def _chunk(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Open a chunk on first use in this process (memory maps must not cross a fork), checking it again
        if its files changed since `build` checked them."""
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if name not in self._open:
            try:
                if not self._trusted(name):
                    problem = self._checksum_problem(name, read_json(self._chunks_dir / f"{name}.json").get("crc32"))
                    if problem:
                        raise UserError(f"{self._describe(name, problem)}; run the command again to rebuild it")
                pixels, meta = self._load_chunk(name)
            except (OSError, ValueError, SafetensorError) as e:  # removed, or damaged while in use
                raise UserError(f"{self._describe(name, f'cannot be read ({e})')}; run the command again") from None
            self._open[name] = (pixels, meta)
        return self._open[name]

    def _load_chunk(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        pixels = np.load(self._chunks_dir / f"{name}.pixels.npy", mmap_mode="r", allow_pickle=False)
        meta = safetensors.numpy.load_file(str(self._chunks_dir / f"{name}.meta.safetensors"))
        return pixels, meta

    def _describe(self, name: str, problem: str) -> str:
        return f"cache chunk {self._chunks_dir / name}: {problem}"

    def _identity(self, name: str) -> Identity:
        stats = [os.stat(self._chunks_dir / f"{name}.{kind}") for kind in CHECKED]
        return tuple(v for st in stats for v in (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))

    def _checksum_problem(self, name: str, expected: object) -> str | None:
        """What is wrong with a chunk's data files, or None when they match their recorded checksums (and
        then the chunk is trusted until its files change)."""
        if not isinstance(expected, dict):
            return "its manifest records no checksums"
        try:
            identity = self._identity(name)  # before reading: a write during the check shows as a change later
            sums = {kind: _crc32_file(self._chunks_dir / f"{name}.{kind}") for kind in CHECKED}
        except OSError as e:
            return f"a data file cannot be read ({e})"
        for kind in CHECKED:
            if sums[kind] != expected.get(kind):
                return f"{kind} does not match its checksum (the file is damaged)"
        self._verified[name] = identity
        return None

    def _checked_index(self, fingerprints: Mapping[str, Fingerprint]) -> dict[str, _Entry]:
        """The index after checking every chunk that would serve one of `fingerprints`; a damaged chunk is
        reported and removed, so its images are processed again. Runs under the build lock."""
        adopted = 0
        while True:
            manifests = self._read_manifests()
            index = _index(manifests)
            # chunk -> how many of this build's images it serves
            serving = Counter(
                index[i].chunk for i, fp in fingerprints.items() if i in index and index[i].fingerprint == fp
            )
            damaged = {}
            for name in sorted(serving):
                if self._trusted(name):
                    continue
                if "crc32" not in manifests[name]:
                    problem = self._adopt(name, manifests[name])
                    adopted += problem is None
                else:
                    problem = self._checksum_problem(name, manifests[name]["crc32"])
                if problem:
                    damaged[name] = problem
            if not damaged:
                break
            for name, problem in damaged.items():
                again = _again(serving[name], len(manifests[name]["ids"]))
                print(f"{self._describe(name, problem)}; {again}", file=sys.stderr)
                self._remove_chunk(name)
        if adopted:
            print(
                f"cache {self.root}: recorded checksums for {adopted} chunks written without them (damage done "
                "before now cannot be detected; delete the folder to rebuild it)",
                file=sys.stderr,
            )
        return index

    def _trusted(self, name: str) -> bool:
        """Checked by this object (or the one it was copied from), and its files unchanged since."""
        try:
            return self._verified.get(name) == self._identity(name)
        except OSError:
            return False

    def _adopt(self, name: str, manifest: dict) -> str | None:
        """Record the checksums of a chunk written before they existed, if its files are well-formed."""
        try:
            pixels, meta = self._load_chunk(name)
        except (OSError, ValueError, SafetensorError) as e:
            return f"cannot be read ({e})"
        side = self.config.image_size
        if pixels.dtype != np.uint8 or pixels.shape != (len(manifest["ids"]), 2, 3, side, side):
            return f"pixels.npy holds {pixels.dtype} {pixels.shape}, not what its manifest lists"
        if set(meta) != set(self.meta_keys) or any(len(v) != len(manifest["ids"]) for v in meta.values()):
            return "meta.safetensors does not hold what its manifest lists"
        del pixels
        identity = self._identity(name)
        sums = {kind: _crc32_file(self._chunks_dir / f"{name}.{kind}") for kind in CHECKED}
        atomic_write_json(self._chunks_dir / f"{name}.json", {**manifest, "crc32": sums})
        self._verified[name] = identity
        return None

    def _remove_chunk(self, name: str) -> None:
        """Uncommit first (the manifest), so a kill midway leaves files the next build sweeps away."""
        (self._chunks_dir / f"{name}.json").unlink(missing_ok=True)
        for kind in CHECKED:
            (self._chunks_dir / f"{name}.{kind}").unlink(missing_ok=True)
        self._verified.pop(name, None)

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

    def _read_manifests(self) -> dict[str, dict]:
        """Every committed chunk's manifest, by chunk name; an unreadable one is reported and its chunk
        removed (its images are processed again)."""
        manifests = {}
        for path in sorted(self._chunks_dir.glob("[0-9]*.json")):
            try:
                data = read_json(path)
                problem = None if _well_formed(data) else "its manifest is not a chunk manifest"
            except UserError as e:
                problem = f"its manifest is unreadable ({e})"
            if problem:
                print(f"{self._describe(path.stem, problem)}; processing its images again", file=sys.stderr)
                self._remove_chunk(path.stem)
            else:
                manifests[path.stem] = data
        return manifests

    def _write(self, todo: list[tuple[str, Path, Fingerprint]], workers: int, progress: bool) -> None:
        """Preprocess in a thread pool, store in order; on any error keep what was stored before it."""
        local = threading.local()

        def process(job: tuple[str, Path, Fingerprint]) -> PreprocessedImage:
            if not hasattr(local, "preprocessor"):  # backends such as MediaPipe are not thread-safe
                local.preprocessor = Preprocessor(self.config)
            return local.preprocessor.process(load_image(job[1]))

        numbers = [int(p.stem) for p in self._chunks_dir.glob("[0-9]*.json")]
        first = max(numbers, default=0) + 1
        writer = _ChunkWriter(
            self._chunks_dir, first, self.chunk_images, self.config.image_size, self.meta_keys, self._wrote
        )
        bar = tqdm(total=len(todo), desc="preprocessing images", unit="img", file=sys.stderr, disable=not progress)
        with bar, ThreadPoolExecutor(workers) as pool:
            try:
                for (image_id, _, fingerprint), item in zip(todo, pool.map(process, todo), strict=True):
                    writer.add(image_id, fingerprint, item)
                    bar.update()
            finally:
                pool.shutdown(cancel_futures=True)
                writer.flush()  # keep the finished images even when the build is interrupted

    def _wrote(self, name: str) -> None:
        """A chunk this object just wrote (and summed as it wrote) needs no check."""
        self._verified[name] = self._identity(name)


class _ChunkWriter:
    """Buffers processed images and writes them as numbered, immutable chunks; `written(name)` is called
    once a chunk is committed."""

    def __init__(
        self,
        directory: Path,
        number: int,
        capacity: int,
        side: int,
        meta_keys: tuple[str, ...],
        written: Callable[[str], None],
    ) -> None:
        self.directory, self.number, self.capacity, self.written = directory, number, capacity, written
        self.pixels = np.empty((capacity, 2, 3, side, side), np.uint8)
        self.meta = {key: np.empty((capacity, *META_FIELDS[key][0]), META_FIELDS[key][1]) for key in meta_keys}
        self.ids: list[str] = []
        self.fingerprints: list[Fingerprint] = []

    def add(self, image_id: str, fingerprint: Fingerprint, item: PreprocessedImage) -> None:
        n = len(self.ids)
        self.pixels[n, 0], self.pixels[n, 1] = item.image.transpose(2, 0, 1), item.crop.transpose(2, 0, 1)
        for key, values in self.meta.items():
            values[n] = getattr(item, key)
        self.ids.append(image_id)
        self.fingerprints.append(fingerprint)
        if len(self.ids) == self.capacity:
            self.flush()

    def flush(self) -> None:
        n = len(self.ids)
        if n == 0:
            return
        name = f"{self.number:06d}"
        pixels_crc = _save_npy(self.directory / f"{name}.pixels.npy", self.pixels[:n])
        blob = safetensors.numpy.save({k: np.ascontiguousarray(v[:n]) for k, v in self.meta.items()})
        atomic_write(self.directory / f"{name}.meta.safetensors", lambda f: f.write(blob))
        sums = {"pixels.npy": pixels_crc, "meta.safetensors": zlib.crc32(blob)}
        atomic_write_json(
            self.directory / f"{name}.json", {"ids": self.ids, "fingerprints": self.fingerprints, "crc32": sums}
        )
        self.written(name)
        self.number += 1
        self.ids, self.fingerprints = [], []


class _Crc32Writer:
    """A file that sums what passes through it, so a chunk is checksummed without reading it back."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.crc = file, 0

    def write(self, data: bytes) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return self.file.write(data)


def _save_npy(path: Path, array: np.ndarray) -> int:
    """Write `array` as an .npy file, atomically; returns the file's CRC-32."""
    sums: list[int] = []

    def write(f: BinaryIO) -> None:
        summing = _Crc32Writer(f)
        np.save(summing, array, allow_pickle=False)
        sums.append(summing.crc)

    atomic_write(path, write)
    return sums[0]


def _crc32_file(path: Path) -> int:
    """CRC-32 of a file, through a memory map (no copy; zlib releases the GIL)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return zlib.crc32(data)


def _again(needed: int, held: int) -> str:
    """What a damaged chunk's removal costs: the images this build needs from it are processed now; the
    others it held (superseded, or not asked for by this command) only when a later build needs them."""
    if needed == held:
        return f"its {held} images are processed again"
    return f"{needed} of its {held} images are processed again now (the others when a command needs them)"


def _well_formed(manifest: object) -> bool:
    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("ids"), list)
        and isinstance(manifest.get("fingerprints"), list)
        and len(manifest["ids"]) == len(manifest["fingerprints"])
    )


def _index(manifests: Mapping[str, dict]) -> dict[str, _Entry]:
    """id -> where it is stored; chunks in name order, so the newest chunk that holds an id wins."""
    index: dict[str, _Entry] = {}
    for name in sorted(manifests):
        data = manifests[name]
        for row, (image_id, fp) in enumerate(zip(data["ids"], data["fingerprints"], strict=True)):
            index[image_id] = _Entry(name, row, fp)
    return index


def _fingerprint(path: Path) -> Fingerprint:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    return [path.name, stat.st_size, stat.st_mtime_ns]
