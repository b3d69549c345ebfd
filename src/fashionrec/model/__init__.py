"""Model library (every family, see `registry`): no training code imported here.

Names load on first use, so that light users (the CLI's argument parsing, the data layer) do not pay for
importing transformers."""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ModelConfig": "config",
    "preset_config": "config",
    "ModelFamily": "registry",
    "register": "registry",
    "convert_original": "original_format",
    "export_original": "original_format",
    "is_original_checkpoint": "original_format",
    "FashionVLP": "fashionvlp",
    "FashionModel": "factory",
    "OriginalFashionVLP": "original",
    "RetrievalModel": "base",
    "build_model": "factory",
    "TextTokenizer": "tokenizer",
    "create_model": "factory",
    "from_pretrained": "hub",
    "load_model": "hub",
    "save_pretrained": "hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fashionrec.model' has no attribute {name!r}")
    return getattr(import_module(f"fashionrec.model.{_EXPORTS[name]}"), name)
