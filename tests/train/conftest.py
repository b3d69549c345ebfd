"""CLI flags of the small training runs of the train tests (on the session's `small_data`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from train_helpers import small_run_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))  # the original system's model spec and run


@pytest.fixture(scope="session")
def train_args(small_data: Path, cache_dir: Path) -> list[str]:
    """Data and model flags shared by every small run (resume repeats them, as a user would)."""
    return small_run_args(small_data, cache_dir)
