"""Building a fresh model for training: preset architecture, tokenizer, and (optionally) pretrained weights
read from local files only. Nothing here downloads: offline with no weights is a clear error."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from fashionrec.bertvocab import BERT_UNCASED, find_vocab
from fashionrec.errors import UserError
from fashionrec.model.config import ModelConfig, preset_config
from fashionrec.model.factory import FashionModel, build_model
from fashionrec.model.tokenizer import TextTokenizer

TINY_VOCAB_SIZE = 1000
RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth", "resnet50-19c8e357.pth")
BERT_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "vocab_size",
)

NO_WEIGHTS_HINT = (
    "pass --text-model DIR and --backbone-weights FILE pointing at local copies, "
    "or train from random initialisation with --no-pretrained"
)


def _find_resnet50_weights(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UserError(f"backbone weights not found: {path}")
        return path
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for name in RESNET50_FILES:
        if (hub / name).is_file():
            return hub / name
    raise UserError(f"no ResNet-50 weights in {hub}; {NO_WEIGHTS_HINT}")


def _resolve_text_model(name_or_dir: str) -> Path:
    """A directory as given, or the snapshot of a Hugging Face model already in the local cache."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_dir, local_files_only=True))
    except Exception as e:  # any lookup failure means: not available offline
        raise UserError(
            f"text model {name_or_dir!r} is not a directory nor in the local cache; {NO_WEIGHTS_HINT}"
        ) from e


def _text_config(directory: Path) -> dict:
    import json

    cfg = json.loads((directory / "config.json").read_text())
    if cfg.get("model_type") not in (None, "bert"):
        raise UserError(f"text model in {directory} is {cfg.get('model_type')!r}, not a BERT-family model")
    return {k: cfg[k] for k in BERT_KEYS if k in cfg}


def create_model(
    preset: str,
    train_texts: Iterable[str],
    pretrained: bool,
    text_model: str | None = None,
    backbone_weights: str | None = None,
) -> FashionModel:
    """A new model for training. Random-init text models get a WordPiece vocabulary trained on `train_texts`,
    except `original`, whose ids are always bert-base-uncased's (its checkpoints' embeddings index them)."""
    config: ModelConfig = preset_config(preset)
    text_dir = None
    if text_model or (pretrained and config.text_model):
        text_dir = _resolve_text_model(text_model or config.text_model)
        config.text = _text_config(text_dir)
        config.text_model = str(text_model or config.text_model)
        tokenizer = TextTokenizer.from_directory(text_dir, config.max_text_len)
    elif preset == "original":
        config.text_model = None
        tokenizer = TextTokenizer.from_vocab(find_vocab(BERT_UNCASED), config.max_text_len)
        config.text = {**config.text, "vocab_size": tokenizer.vocab_size}
    else:
        config.text_model = None
        tokenizer = TextTokenizer.train_wordpiece(train_texts, TINY_VOCAB_SIZE, config.max_text_len)
        config.text = {**config.text, "vocab_size": tokenizer.vocab_size}
    weights = None
    if pretrained and config.backbone == "resnet50":
        weights = _find_resnet50_weights(backbone_weights)
        config.backbone_weights = str(weights)
    model = build_model(config, tokenizer)
    if weights is not None:
        model.load_backbone_weights(torch.load(weights, map_location="cpu", weights_only=True))
    if text_dir is not None:
        model.load_text_weights(text_dir)
    return model
