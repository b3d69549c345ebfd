"""The cache of frozen encoders' vectors: each input computed once, a damaged chunk reported and computed
again, a changed image file computed again, another encoder never served."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fashionrec.data.features import FeatureCache, image_content_key, text_content_key

TEXTS = ["is red", "is blue and longer", "has short sleeves"]


@pytest.fixture
def computed() -> list[list[str]]:
    return []


def compute_into(calls: list[list[str]]):
    def compute(inputs: list[str]) -> np.ndarray:
        calls.append(list(inputs))
        return np.stack([np.full(4, float(len(text)), np.float32) for text in inputs])

    return compute


def build(cache: FeatureCache, calls: list[list[str]], texts=TEXTS) -> int:
    return cache.build({t: text_content_key(t) for t in texts}, {t: t for t in texts}, compute_into(calls), batch=2)


def test_each_input_is_computed_once_then_read_back(tmp_path: Path, computed) -> None:
    assert build(FeatureCache(tmp_path, "text", "k1", chunk_rows=2), computed) == 3
    assert computed == [["is red", "is blue and longer"], ["has short sleeves"]]
    later = FeatureCache(tmp_path, "text", "k1")
    assert build(later, computed, [*TEXTS, "is green"]) == 1 and computed[-1] == ["is green"]
    np.testing.assert_array_equal(later.get("is blue and longer"), np.full(4, 18.0))
    assert build(FeatureCache(tmp_path, "text", "k2"), computed) == 3  # another encoder: its own vectors


def test_a_damaged_chunk_is_reported_and_computed_again(tmp_path: Path, computed, capsys) -> None:
    build(FeatureCache(tmp_path, "text", "k1", chunk_rows=2), computed)
    first = sorted((tmp_path / "features" / "text-k1").glob("*.safetensors"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    again = FeatureCache(tmp_path, "text", "k1")
    assert build(again, computed) == 2 and computed[-1] == ["is red", "is blue and longer"]
    assert "does not match its checksum; computing its vectors again" in capsys.readouterr().err
    np.testing.assert_array_equal(again.get("is red"), np.full(4, 6.0))


def test_a_changed_image_file_gets_a_new_content_key(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"1")
    before = image_content_key("a", path)
    path.write_bytes(b"22")
    os.utime(path, ns=(1, 1))
    assert image_content_key("a", path) != before
