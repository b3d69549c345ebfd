from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # rec_fixtures is shared with tests/serve
from pg_fixtures import catalog_name, pg_catalog, pg_server, pg_url  # noqa: E402, F401
from rec_fixtures import demo_images, tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo images; tests that change files work on a copy."""
    return demo_images(tmp_path_factory.mktemp("demo"))
