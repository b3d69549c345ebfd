"""docs/ARCHITECTURE.md names real modules and functions: a rename without the doc fails here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
DOTTED = sorted(set(re.findall(r"`(fashionrec(?:\.\w+)+)", DOC)))


def resolve(dotted: str) -> object:
    """A module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("dotted", DOTTED)
def test_documented_names_exist(dotted):
    resolve(dotted)


def test_documented_model_api_exists():
    from fashionrec.model import checkpoint_format

    for name in ("read", "write", "training_state", "differences", "FORMAT_VERSION", "Checkpoint"):
        assert hasattr(checkpoint_format, name)
    for name in re.findall(r"`(\w+)\(", DOC.split("## Model contracts")[1]):
        if name not in ("FashionVLP", "encode_reference", "encode_target", "forward", "loss"):
            assert any(hasattr(resolve(owner), name) for owner in MODEL_OWNERS), name


MODEL_OWNERS = (
    "fashionrec.model",
    "fashionrec.model.base.RetrievalModel",
    "fashionrec.model.registry.ModelFamily",
    "fashionrec.model.checkpoint_format",
    "fashionrec.model.checkpoint_format.Checkpoint",
    "fashionrec.model.config.ModelConfig",
)
