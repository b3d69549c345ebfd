"""Small training runs for the train tests: a one-category demo dataset and CLI helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.data.demo import make_demo_data


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_data(tmp_path_factory.mktemp("small_demo"), images=120, seed=3)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def train_args(small_data: Path, cache_dir: Path) -> list[str]:
    """Data and model flags shared by every small run (resume repeats them, as a user would)."""
    return [
        "--path-file",
        str(small_data),
        "--path-folder",
        str(small_data / "images"),
        "--categories",
        "dress",
        "--preset",
        "tiny",
        "--batch",
        "8",
        "--gradient-accumulation",
        "2",
        "--num-workers",
        "0",
        "--cache-dir",
        str(cache_dir),
        "--seed",
        "3",
    ]
