"""Shared by tests/index and tests/serve: a model-free encoder, a tiny real checkpoint and demo catalogs."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fashionrec.index.images import ImageLimits
from fashionrec.index.items import Item

# Small upload limits, so oversized uploads stay small in tests.
SMALL_LIMITS = ImageLimits(max_bytes=50_000, max_pixels=300 * 300)


def brute_force(
    vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int, exclude: Collection[str] = (), among=None
) -> list[str]:
    """The exact inner-product ranking every backend must return (within `among`, without `exclude`)."""
    order = np.argsort(-(vectors @ query), kind="stable")
    return [ids[r] for r in order if ids[r] not in exclude and (among is None or ids[r] in among)][:k]


def labels(ids: list[str]) -> list[tuple[str, ...]]:
    """Three categories of unequal size; every seventh item is in two of them (as FashionIQ's shirts/tops)."""
    names = ["dress", "shirt", "shirt", "toptee", "toptee", "toptee"]
    return [
        (names[i % 6], "toptee") if i % 7 == 0 and names[i % 6] != "toptee" else (names[i % 6],)
        for i in range(len(ids))
    ]


def records(ids: list[str], categories: list[tuple[str, ...]] | None = None) -> list[Item]:
    """Item records for backend tests (their files play no part)."""
    categories = categories or [("unknown",)] * len(ids)
    return [Item(i, f"{i}.png", 1, 1, f"sha-{i}", names) for i, names in zip(ids, categories, strict=True)]


def members(ids: list[str], categories: list[tuple[str, ...]], name: str) -> set[str]:
    return {i for i, names in zip(ids, categories, strict=True) if name in names}


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


class FakeEncoder:
    """Embeds an image as its normalised mean colour (plus a constant, so black is not a zero vector):
    deterministic, instant, and similar pictures get similar vectors. The text is ignored."""

    fingerprint = "fake-encoder"
    preprocess = {"key": "fake", "config": {}}
    dim = 4

    @staticmethod
    def _vector(image: Image.Image) -> np.ndarray:
        mean = np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) / 255
        return unit(np.concatenate([mean, [0.2]]))

    def encode_catalog(self, paths: Mapping[str, Path], batch_size: int) -> np.ndarray:
        vectors = [self._vector(Image.open(p)) for p in paths.values()]
        return np.stack(vectors) if vectors else np.empty((0, 4), np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self._vector(image) for image in images])

    def prepare_query(self, image: Image.Image, text: str) -> np.ndarray:
        return self._vector(image)

    def encode_queries(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(prepared)


def solid_images(folder: Path, count: int, size: int = 48) -> Path:
    """`count` PNGs of distinct solid colours, c000.png ... (ids c000 ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        Image.new("RGB", (size, size), colour).save(folder / f"c{i:03d}.png")
    return folder


def tiny_checkpoint(out: Path, seed: int = 0) -> Path:
    """A random-init tiny FashionVLP saved as a model directory, vocabulary from the demo captions."""
    import torch

    from fashionrec.data.demo import LENGTH_PHRASES, PHRASES
    from fashionrec.model import create_model, save_pretrained

    tables = (*PHRASES.values(), *LENGTH_PHRASES.values())
    texts = [phrase for table in tables for phrases in table.values() for phrase in phrases]
    torch.manual_seed(seed)
    save_pretrained(create_model("tiny", texts, pretrained=False), out)
    return out


def demo_images(out: Path, count: int = 48) -> Path:
    """The demo data set's images folder (a fresh copy per caller may be mutated freely)."""
    from fashionrec.data.demo import make_demo_data

    return make_demo_data(out, images=count, image_size=64) / "images"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels but carries almost no data: a decompression bomb's
    header, which must be refused before any pixel is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
