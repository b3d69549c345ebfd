"""Where the real FashionIQ annotations are: ../shared/data/fashioniq beside the repository (or inside it),
or $FASHIONIQ_ANNOTATIONS."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fashioniq(missing_resource: Callable[[str], NoReturn]) -> Path:
    candidates = [REPO / "shared/data/fashioniq", REPO.parent / "shared/data/fashioniq"]
    if os.environ.get("FASHIONIQ_ANNOTATIONS"):
        candidates.insert(0, Path(os.environ["FASHIONIQ_ANNOTATIONS"]))
    for path in candidates:
        if (path / "captions").is_dir() and (path / "image_splits").is_dir():
            return path
    missing_resource("FashionIQ annotations not found (../shared/data/fashioniq or $FASHIONIQ_ANNOTATIONS)")
