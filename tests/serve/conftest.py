from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))  # shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pg_fixtures import catalog_name, pg_open, pg_server, pg_url  # noqa: E402, F401
from rec_fixtures import SMALL_LIMITS, FakeEncoder, demo_images, solid_images, tiny_checkpoint  # noqa: E402
from serve_helpers import DRESSES, live_server  # noqa: E402

from fashionrec.index import Recommender, build_index  # noqa: E402
from fashionrec.index.categories import from_split_files  # noqa: E402
from fashionrec.index.registry import open_catalog  # noqa: E402
from fashionrec.index.vector_import import import_catalog  # noqa: E402
from fashionrec.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def fake_recommender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recommender]:
    """A real Recommender over 12 solid-colour images with FakeEncoder in place of the model; c000, c002 ...
    are "even", the others "odd", and c000 is "featured" too."""
    root = tmp_path_factory.mktemp("fake")
    encoder = FakeEncoder()
    categories = {f"c{i:03d}": ("even",) if i % 2 == 0 else ("odd",) for i in range(12)}
    categories["c000"] = ("even", "featured")
    images = solid_images(root / "images", 12)
    build_index(Path("unused"), images, root / "index", encoder=encoder, categories=categories)
    recommender = Recommender(encoder, open_catalog(root / "index"), SMALL_LIMITS)
    yield recommender
    recommender.close()


@pytest.fixture(scope="session")
def tiny_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recommender, Path]]:
    """The real tiny model over an index of the demo images (16 per category, categories from the demo's
    split files, product details for the dresses), and the images folder."""
    root = tmp_path_factory.mktemp("tiny")
    checkpoint = tiny_checkpoint(root / "ckpt")
    images = demo_images(root / "demo")
    categories = from_split_files(images.parent)
    build_index(
        checkpoint,
        images,
        root / "index",
        cache_dir=root / "cache",
        device="cpu",
        categories=categories,
        products=DRESSES,
    )
    recommender = Recommender.open(checkpoint, root / "index", device="cpu")
    yield recommender, images
    recommender.close()


@pytest.fixture(scope="session")
def tiny_server(tiny_service: tuple[Recommender, Path]) -> Iterator[str]:
    with live_server(create_app(tiny_service[0])) as url:
        yield url


@pytest.fixture(scope="session")
def imported_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recommender]:
    """A catalog imported without images (`fashionrec index --from-mongo-export`: twelve colours' FakeEncoder
    vectors, as raw as the original system stored them), plus one item added with its picture ("added")."""
    root = tmp_path_factory.mktemp("imported")
    encoder = FakeEncoder()
    images = solid_images(root / "images", 12)
    paths = {path.name: path for path in sorted(images.iterdir())}
    vectors = encoder.encode_catalog(paths, 1)
    documents = [
        {"_id": {"$oid": f"{n:024x}"}, "name": name, "features": (3 * vector).tolist()}
        for n, (name, vector) in enumerate(zip(paths, vectors, strict=True))
    ]
    (root / "export.json").write_text("".join(json.dumps(document) + "\n" for document in documents))
    import_catalog(Path("unused"), root / "export.json", root / "index", encoder=encoder)
    recommender = Recommender(encoder, open_catalog(root / "index"), SMALL_LIMITS)
    recommender.add_item({"id": "added", "title": "Added with its picture"}, (images / "c003.png").read_bytes())
    yield recommender
    recommender.close()
