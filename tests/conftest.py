"""Fixtures shared by every test package: demo data made once per session, stand-in images, and the
rule for test dependencies that are missing (skip here, fail in CI)."""

from __future__ import annotations

import importlib
import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from PIL import Image

from fashionrec.data.demo import make_demo_data

StandIns = Callable[..., list[Path]]


def in_ci() -> bool:
    """CI runs `CI=true bash .ci/run`; "", "0" and "false" mean not CI."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def unavailable(message: str) -> NoReturn:
    """A test dependency is missing: skip here, but fail in CI, which installs every one (a skip there
    would hide the tests it guards)."""
    if in_ci():
        pytest.fail(f"{message} (CI is set, and CI must have every test dependency)", pytrace=False)
    pytest.skip(message)


def require_module(name: str) -> ModuleType:
    """`name` imported, or `unavailable`: the CI-aware `pytest.importorskip`."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        unavailable(f"needs {name} ({e})")


@pytest.fixture(scope="session")
def require() -> Callable[[str], ModuleType]:
    """`require("playwright.sync_api") -> module`: imports it, else skips (fails when CI is set)."""
    return require_module


@pytest.fixture(scope="session")
def missing_resource() -> Callable[[str], NoReturn]:
    """`missing_resource(message)`: skip, or fail when CI is set; for files and tools, not modules."""
    return unavailable


def write_stand_in_images(folder: Path, ids: Iterable[str], size: int = 8, ext: str = "png") -> list[Path]:
    """One tiny picture per id (a colour derived from the id, so images differ), for tests on real ids."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id in ids:
        code = zlib.crc32(image_id.encode())
        colour = (code & 255, (code >> 8) & 255, (code >> 16) & 255)
        path = folder / f"{image_id}.{ext}"
        Image.new("RGB", (size, size), colour).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default-sized demo dataset (600 images, seed 0); read-only for tests, copy it to change it."""
    return make_demo_data(tmp_path_factory.mktemp("demo_data"), images=600, seed=0)


@pytest.fixture
def stand_in_images() -> StandIns:
    """`stand_in_images(folder, ids, size=8, ext="png") -> paths`."""
    return write_stand_in_images


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 demo images (seed 3): what the small training runs of the tests train on."""
    return make_demo_data(tmp_path_factory.mktemp("small_demo"), images=120, seed=3)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")
