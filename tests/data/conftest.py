"""Where the real FashionIQ annotations are: ../shared/data/fashioniq beside the repository (or inside it),
or $FASHIONIQ_ANNOTATIONS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fashioniq() -> Path:
    candidates = [REPO / "shared/data/fashioniq", REPO.parent / "shared/data/fashioniq"]
    if os.environ.get("FASHIONIQ_ANNOTATIONS"):
        candidates.insert(0, Path(os.environ["FASHIONIQ_ANNOTATIONS"]))
    for path in candidates:
        if (path / "captions").is_dir() and (path / "image_splits").is_dir():
            return path
    message = "FashionIQ annotations not found (../shared/data/fashioniq or $FASHIONIQ_ANNOTATIONS)"
    if os.environ.get("CI"):  # CI always has them: a missing copy must fail, not hide these tests
        pytest.fail(message)
    pytest.skip(message)
