"""Building a fresh model for training: preset architecture, tokenizer, and (optionally) pretrained weights.

Pretrained weights come by name, as in the original system: the text model is a directory or a Hugging Face
model id (fetched into the Hugging Face cache on first use: config, tokenizer files and safetensors weights
only), the ResNet-50 is torchvision's ImageNet weights (fetched into `torch.hub.get_dir()`), or a file.
`HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) turns every download off; a missing file is then one clear
error saying what to fetch. Environment variables are read at call time, not when a library was imported."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from fashionrec.bertvocab import BERT_UNCASED, find_vocab
from fashionrec.errors import UserError
from fashionrec.hfcache import hf_cache_dir, offline
from fashionrec.model.config import ModelConfig, preset_config
from fashionrec.model.factory import FashionModel, build_model
from fashionrec.model.tokenizer import TextTokenizer

TINY_VOCAB_SIZE = 1000
BERT_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "vocab_size",
)
# What a BERT-family model needs from its Hugging Face repository: no pickled weights, no other formats.
TEXT_MODEL_FILES = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
]
NO_PRETRAINED = "or train from random initialisation with --no-pretrained"


def _fetch_hint(model_id: str) -> str:
    files = "config.json tokenizer.json tokenizer_config.json vocab.txt model.safetensors"
    return (
        f"on a machine with internet run `hf download {model_id} {files} --local-dir DIR` and pass "
        f"--text-model DIR (or copy that machine's Hugging Face cache to {hf_cache_dir()}), {NO_PRETRAINED}"
    )


def _check_text_model_dir(directory: Path, name: str) -> Path:
    if not (directory / "config.json").is_file():
        raise UserError(f"text model {name}: no config.json in {directory}")
    if not ((directory / "tokenizer.json").is_file() or (directory / "vocab.txt").is_file()):
        raise UserError(f"text model {name}: no tokenizer.json or vocab.txt in {directory}")
    if not ((directory / "model.safetensors").is_file() or (directory / "model.safetensors.index.json").is_file()):
        raise UserError(
            f"text model {name}: no model.safetensors in {directory} (fashionrec reads safetensors weights only, "
            "never pickled .bin files)"
        )
    return directory


def resolve_text_model(name_or_dir: str) -> Path:
    """A local directory as given, or the snapshot of Hugging Face model `name_or_dir`: from the cache when it
    holds the files, else downloaded (only TEXT_MODEL_FILES) unless offline."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return _check_text_model_dir(path, name_or_dir)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    cache = hf_cache_dir()
    try:
        snapshot = Path(
            snapshot_download(name_or_dir, cache_dir=cache, allow_patterns=TEXT_MODEL_FILES, local_files_only=True)
        )
        return _check_text_model_dir(snapshot, name_or_dir)
    except HFValidationError as e:
        raise UserError(f"text model {name_or_dir!r} is neither a directory nor a Hugging Face model id") from e
    except Exception:  # not (completely) in the cache: download below, unless offline
        pass
    if offline():
        raise UserError(
            f"text model {name_or_dir!r} is not in the Hugging Face cache {cache} and downloads are off "
            f"(HF_HUB_OFFLINE): {_fetch_hint(name_or_dir)}"
        )
    try:
        snapshot = Path(snapshot_download(name_or_dir, cache_dir=cache, allow_patterns=TEXT_MODEL_FILES))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise UserError(
            f"text model {name_or_dir!r}: not a directory, nor a Hugging Face model (or it is private)"
        ) from e
    except Exception as e:  # connection refused, timeout, proxy, incomplete download: all mean "fetch it by hand"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(
            f"text model {name_or_dir!r} could not be downloaded ({reason}); {_fetch_hint(name_or_dir)}"
        ) from e
    return _check_text_model_dir(snapshot, name_or_dir)


def _text_config(directory: Path) -> dict:
    cfg = json.loads((directory / "config.json").read_text())
    if cfg.get("model_type") not in (None, "bert"):
        raise UserError(f"text model in {directory} is {cfg.get('model_type')!r}, not a BERT-family model")
    return {k: cfg[k] for k in BERT_KEYS if k in cfg}


def _imagenet_weights():
    """torchvision's ResNet-50 IMAGENET1K_V2 (80.9 % top-1): the torchvision weights nearest to the original
    system's timm `resnet50.a1_in1k` (80.4 %, also a modern long-schedule recipe). docs/reproduce.md has more."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V2


def resnet50_weights_file(explicit: str | None = None) -> Path:
    """`explicit` when given; else torchvision's ImageNet ResNet-50 file in `torch.hub.get_dir()/checkpoints`
    (which honours TORCH_HOME and XDG_CACHE_HOME), downloaded there on first use unless offline."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"backbone weights not found: {path}")
        return path
    weights = _imagenet_weights()
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / weights.url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    hint = f"fetch {weights.url} into {folder}, or pass --backbone-weights FILE, {NO_PRETRAINED}"
    if offline():
        raise UserError(f"no ResNet-50 ImageNet weights at {path} and downloads are off (HF_HUB_OFFLINE): {hint}")
    try:
        weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # no connection (URLError is an OSError), or the hash check failed
        raise UserError(f"could not download ResNet-50 ImageNet weights ({e}); {hint}") from e
    return path


def read_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet-50 state dict from a torch file (plain tensors only) or a .safetensors file (torchvision and
    timm use the same parameter names)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # damaged or foreign file: one line, no traceback
        raise UserError(f"backbone weights {path} cannot be read as a state dict ({type(e).__name__})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"backbone weights {path} are not a plain state dict of tensors")
    return state


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
        text_dir = resolve_text_model(text_model or config.text_model)
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
        weights = resnet50_weights_file(backbone_weights)
        config.backbone_weights = str(weights)
    model = build_model(config, tokenizer)
    if weights is not None:
        try:
            model.load_backbone_weights(read_backbone_state(weights))
        except RuntimeError as e:  # strict load: missing or misshapen keys
            first = str(e).strip().splitlines()[0][:200]
            raise UserError(f"backbone weights {weights} do not fit a ResNet-50: {first}") from e
    if text_dir is not None:
        model.load_text_weights(text_dir)
    return model
