from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))  # shared helpers
from rec_fixtures import SMALL_LIMITS, FakeEncoder, demo_images, solid_images, tiny_checkpoint  # noqa: E402
from serve_helpers import live_server  # noqa: E402

from fashionrec.index import Recommender, build_index  # noqa: E402
from fashionrec.index.catalog import Catalog  # noqa: E402
from fashionrec.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def fake_recommender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recommender]:
    """A real Recommender over 12 solid-colour images with FakeEncoder in place of the model."""
    root = tmp_path_factory.mktemp("fake")
    encoder = FakeEncoder()
    build_index(Path("unused"), solid_images(root / "images", 12), root / "index", encoder=encoder)
    recommender = Recommender(encoder, Catalog.open(root / "index"), SMALL_LIMITS)
    yield recommender
    recommender.close()


@pytest.fixture(scope="session")
def tiny_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recommender, Path]]:
    """The real tiny model over an index of the demo images, and the images folder."""
    root = tmp_path_factory.mktemp("tiny")
    checkpoint = tiny_checkpoint(root / "ckpt")
    images = demo_images(root / "demo")
    build_index(checkpoint, images, root / "index", cache_dir=root / "cache", device="cpu")
    recommender = Recommender.open(checkpoint, root / "index", device="cpu")
    yield recommender, images
    recommender.close()


@pytest.fixture(scope="session")
def tiny_server(tiny_service: tuple[Recommender, Path]) -> Iterator[str]:
    with live_server(create_app(tiny_service[0])) as url:
        yield url
