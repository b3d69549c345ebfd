"""Vectors of frozen encoders, computed once: a model part that does not train (a frozen CLIP image or text
encoder) gives every image or caption the same vector in every epoch and every run, so it is run once per
input and its outputs are read back instead.

Layout, under `<cache_dir>/features/<name>-<key>/` (`key` names the encoder: its weights, tokenizer and
preprocessing, so another encoder never reads these):

    build.lock                 held by a build, so two builders never write at once
    NNNNNN.safetensors         float32 [n, d]: n vectors
    NNNNNN.json                the content keys of its rows and the file's CRC-32, written last: it commits
                               the chunk

A content key says what a vector is of: an image id with its file's name, size and mtime (a changed file
gets a new vector), or a caption text. Chunks are never changed once written; the newest chunk holding a key
wins; a chunk whose data does not match its checksum is reported, removed and computed again."""

from __future__ import annotations

import fcntl
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError
from tqdm import tqdm

from fashionrec.atomic import atomic_write, atomic_write_json
from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError

Compute = Callable[[list[str]], np.ndarray]  # inputs (what the caller maps names to) -> float32 [n, d]


def image_content_key(image_id: str, path: Path) -> str:
    """An image's content key: its id and its file's identity (name, size, mtime)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    return f"image:{image_id}:{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def text_content_key(text: str) -> str:
    return f"text:{text}"


class FeatureCache:
    """The vectors of one encoder. `build(items, compute)` computes what is missing; `get(name)` reads one."""

    def __init__(self, cache_dir: str | Path, name: str, key: str, chunk_rows: int = 4096) -> None:
        self.root = Path(cache_dir) / "features" / f"{name}-{key}"
        self.name, self.key, self.chunk_rows = name, key, chunk_rows
        self._rows: dict[str, np.ndarray] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def get(self, name: str) -> np.ndarray:
        try:
            return self._rows[name]
        except KeyError:
            raise KeyError(f"no {self.name} vector for {name!r}; build() it first") from None

    def build(self, items: Mapping[str, str], inputs: Mapping[str, str], compute: Compute, batch: int = 64) -> int:
        """Make `get(name)` serve every name of `items` (name -> content key); the vectors missing from the
        cache are computed, `batch` at a time, by `compute` on `inputs[name]`. Returns how many were computed."""
        with self._locked():
            stored = self._load()
            todo = list(dict.fromkeys(n for n, key in items.items() if key not in stored))
            if todo:
                self._compute(todo, items, inputs, compute, batch)
                stored = self._load()
        self._rows.update((name, stored[key]) for name, key in items.items())
        return len(todo)

    def _compute(
        self, todo: Sequence[str], items: Mapping[str, str], inputs: Mapping[str, str], compute: Compute, batch: int
    ) -> None:
        """Compute in batches and commit a chunk every `chunk_rows` rows, so an interrupted build keeps them."""
        first = max((int(p.stem) for p in self.root.glob("[0-9]*.json")), default=0) + 1
        pending: list[np.ndarray] = []
        keys: list[str] = []
        bar = tqdm(total=len(todo), desc=f"computing {self.name} features", unit=self.name, file=sys.stderr)
        with bar:
            for start in range(0, len(todo), batch):
                names = list(todo[start : start + batch])
                vectors = np.asarray(compute([inputs[n] for n in names]), dtype=np.float32)
                pending.append(vectors)
                keys += [items[n] for n in names]
                bar.update(len(names))
                if len(keys) >= self.chunk_rows or start + batch >= len(todo):
                    self._write_chunk(first, keys, np.concatenate(pending))
                    first, pending, keys = first + 1, [], []

    def _write_chunk(self, number: int, keys: list[str], vectors: np.ndarray) -> None:
        blob = safetensors.numpy.save({"features": np.ascontiguousarray(vectors)})
        name = f"{number:06d}"
        atomic_write(self.root / f"{name}.safetensors", lambda f: f.write(blob))
        atomic_write_json(self.root / f"{name}.json", {"keys": keys, "crc32": zlib.crc32(blob)})

    def _load(self) -> dict[str, np.ndarray]:
        """content key -> vector, over every committed chunk (in order: the newest wins); damaged chunks are
        reported and removed, so what they held is computed again."""
        rows: dict[str, np.ndarray] = {}
        for manifest_path in sorted(self.root.glob("[0-9]*.json")):
            data_path = manifest_path.with_suffix(".safetensors")
            try:
                manifest = read_json(manifest_path)
                blob = data_path.read_bytes()
                if zlib.crc32(blob) != manifest["crc32"]:
                    raise ValueError("its data does not match its checksum")
                vectors = safetensors.numpy.load(blob)["features"]
                if len(vectors) != len(manifest["keys"]):
                    raise ValueError("it holds another number of vectors than its manifest lists")
            except (UserError, OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
                print(f"feature cache chunk {data_path}: {e}; computing its vectors again", file=sys.stderr)
                manifest_path.unlink(missing_ok=True)
                data_path.unlink(missing_ok=True)
                continue
            rows.update(zip(manifest["keys"], vectors, strict=True))
        return rows

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "build.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for stray in self.root.glob("[0-9]*.safetensors"):  # a killed build's uncommitted chunk
                    if not stray.with_suffix(".json").exists():
                        stray.unlink()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class CachedFeatures:
    """The frozen parts' vectors a model reads instead of running those parts: by image id, by caption text."""

    image: FeatureCache | None = None
    text: FeatureCache | None = None
