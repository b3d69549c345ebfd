from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # rec_fixtures is shared with tests/serve
from pg_fixtures import catalog_name, pg_catalog, pg_open, pg_server, pg_url  # noqa: E402, F401
from rec_fixtures import demo_images, tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo images; tests that change files work on a copy."""
    return demo_images(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def quick_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder for qdrant-client's local mode. It commits every point to SQLite separately, an fsync
    each (about 25 ms on a disk here, 8 s for 300 points): on a tmpfs (/dev/shm) when there is one, which
    changes where the files are, not how they are written and read back."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="fashionrec-qdrant-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path / "qdrant"
