"""Fixtures of the CUDA tests: the train tests' small dataset and helpers (tests/train/train_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fashionrec.data.demo import make_demo_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # train_helpers, shared, not copied


@pytest.fixture(scope="session")
def gpu_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_data(tmp_path_factory.mktemp("gpu_demo"), images=120, seed=3)


@pytest.fixture(scope="session")
def gpu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu_cache")
