"""Self-describing model directories (save_pretrained / from_pretrained), and `load_model`, which rebuilds
a model for inference from such a directory or a training checkpoint. Everything loads with safetensors
or `torch.load(weights_only=True)`: no code runs on load."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

from fashionrec.atomic import atomic_write_json, atomic_write_text
from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError
from fashionrec.model import checkpoint_format
from fashionrec.model.checkpoint_format import check_finite, clean_state_dict, load_state_strict
from fashionrec.model.factory import FashionModel, rebuild_model

FILES = ("config.json", "tokenizer.json", "model.safetensors")


def save_pretrained(model: FashionModel, directory: str | Path) -> None:
    """config.json (architecture and preprocessing) + tokenizer.json + model.safetensors: everything needed
    to rebuild and to serve, nothing executable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in clean_state_dict(model.state_dict()).items()}
    tmp = directory / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(directory / "model.safetensors")
    atomic_write_text(directory / "tokenizer.json", model.tokenizer.to_json())
    atomic_write_json(directory / "config.json", model.config.to_dict())


def read_config(directory: Path) -> dict:
    """A fashionrec model directory's config; any other folder (a Hugging Face model's own, say) is one line
    saying what it is and how to make a fashionrec model of it."""
    path = directory / "config.json"
    config = read_json(path) if path.is_file() else None
    if isinstance(config, dict) and "preset" in config:
        return config
    if isinstance(config, dict) and ("model_type" in config or "architectures" in config):
        raise UserError(
            f"{directory} is a Hugging Face model folder ({config.get('model_type', 'unknown type')}), not a "
            f"fashionrec model: make one with `fashionrec init --preset clip --model {directory} OUT` and pass OUT"
        )
    missing = next((name for name in FILES if not (directory / name).is_file()), None)
    why = f"{missing} is missing" if missing else "its config.json names no preset"
    raise UserError(f"{directory} is not a fashionrec model directory: {why}")


def from_pretrained(directory: str | Path) -> FashionModel:
    directory = Path(directory)
    config = read_config(directory)
    for name in FILES:
        if not (directory / name).is_file():
            raise UserError(f"{directory} is not a fashionrec model directory: {name} is missing")
    model = rebuild_model(config, (directory / "tokenizer.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    check_finite(state, str(directory))
    load_state_strict(model, state, str(directory))
    return model


def load_model(path: str | Path, text_model: str | None = None) -> FashionModel:
    """A model for inference from a training checkpoint (.pt, fashionrec's or the original system's) or a
    save_pretrained directory, in eval mode. Its preprocessing settings are in `model.config.preprocess`.
    `text_model`: where bert-base-uncased's vocabulary is, for the original system's checkpoints."""
    path = Path(path)
    if path.is_dir():
        model = from_pretrained(path)
    else:
        model = checkpoint_format.read(path, text_model=text_model).build_model()
    return model.eval()
