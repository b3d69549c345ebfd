"""The original system's model spec (tests/model) is shared with the CLI tests that read its checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
