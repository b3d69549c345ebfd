"""Reading models back: self-describing model directories (save_pretrained / from_pretrained) and training
checkpoints. Everything loads with `torch.load(weights_only=True)` or safetensors: no code runs on load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from fashionrec.atomic import atomic_write_json, atomic_write_text
from fashionrec.errors import UserError
from fashionrec.model.config import ModelConfig
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.model.tokenizer import TextTokenizer

COMPILED_PREFIX = "_orig_mod."


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop torch.compile's `_orig_mod.` and DDP's `module.` prefixes so state dicts are portable."""
    out = {}
    for key, value in state.items():
        for prefix in (COMPILED_PREFIX, "module."):
            key = key.replace(prefix, "")
        out[key] = value
    return out


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely; a missing or unreadable file is a user error, not a traceback."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file; none of them is the user's bug
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        # A whole torch file (a zip) that the weights-only reader refuses holds pickled objects, which could run code.
        if zipfile.is_zipfile(path) and "Weights only load failed" in str(e):
            raise UserError(f"Checkpoint cannot be loaded safely (it holds more than plain data): {path}") from e
        raise UserError(f"Checkpoint is truncated or corrupt: {path} ({first_line})") from e
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt:
        raise UserError(f"Not a fashionrec checkpoint (no model_state_dict): {path}")
    return ckpt


def describe_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Missing, unexpected and wrongly-shaped keys, or None when `state` fits `model` exactly."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            parts.append(f"{title}: {', '.join(items[:8])}{more}")
    return "; ".join(parts)


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    problem = describe_mismatch(model, clean_state_dict(state))
    if problem:
        raise UserError(f"{source} does not match this model architecture: {problem}")
    model.load_state_dict(clean_state_dict(state))


def model_from_checkpoint(ckpt: dict[str, Any], source: str) -> FashionVLP:
    """Rebuild the model from a checkpoint's own `model_config` and `tokenizer`."""
    if "model_config" not in ckpt or "tokenizer" not in ckpt:
        raise UserError(f"{source} has no model config (an original-format checkpoint): pass --preset")
    config = ModelConfig.from_dict(ckpt["model_config"])
    model = FashionVLP(config, TextTokenizer.from_json(ckpt["tokenizer"], config.max_text_len))
    load_state_strict(model, ckpt["model_state_dict"], source)
    return model


def save_pretrained(model: FashionVLP, directory: str | Path) -> None:
    """config.json + tokenizer.json + model.safetensors: everything needed to rebuild, nothing executable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in clean_state_dict(model.state_dict()).items()}
    tmp = directory / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(directory / "model.safetensors")
    atomic_write_text(directory / "tokenizer.json", model.tokenizer.to_json())
    atomic_write_json(directory / "config.json", model.config.to_dict())


def from_pretrained(directory: str | Path) -> FashionVLP:
    directory = Path(directory)
    config = ModelConfig.from_dict(json.loads((directory / "config.json").read_text()))
    tokenizer = TextTokenizer.from_json((directory / "tokenizer.json").read_text(), config.max_text_len)
    model = FashionVLP(config, tokenizer)
    load_state_strict(model, load_file(str(directory / "model.safetensors")), str(directory))
    return model


def load_model(path: str | Path) -> FashionVLP:
    """A model for inference from a training checkpoint (.pt) or a save_pretrained directory, in eval mode."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        model = from_pretrained(path)
    else:
        model = model_from_checkpoint(read_checkpoint(path), str(path))
    return model.eval()
