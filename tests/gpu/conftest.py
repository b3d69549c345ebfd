"""The CUDA tests share the train tests' helpers (tests/train/train_helpers.py) and the session's small dataset
(`small_data`, `cache_dir` in tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # train_helpers, shared, not copied
