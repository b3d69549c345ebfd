"""Pretrained weights by name, for every family: a Hugging Face model (a directory, or an id fetched into the
Hugging Face cache on first use: only the files the family asks for, safetensors weights only), and
torchvision's ImageNet ResNet-50 (fetched into `torch.hub.get_dir()`) or a file.
`HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) turns every download off; a missing file is then one clear
error saying what to fetch. Environment variables are read at call time, not when a library was imported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fashionrec.errors import UserError
from fashionrec.hfcache import hf_cache_dir, offline

NO_PRETRAINED = "or train from random initialisation with --no-pretrained"
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")


@dataclass(frozen=True)
class HubFiles:
    """What a family fetches from a Hugging Face repository, and how it talks about it in errors."""

    what: str  # "text model", "model": how errors name it
    flag: str | None  # the option a local copy is passed with (None: only a copied cache will do)
    patterns: Sequence[str]  # the files to fetch (globs): never pickled weights
    hint_files: str  # the files named in the `hf download` hint
    check: Callable[[Path, str], Path]  # raises a UserError when a folder lacks what is needed
    otherwise: str = f", {NO_PRETRAINED}"  # the way around it, if there is one

    def hint(self, model_id: str) -> str:
        cache = f"that machine's Hugging Face cache to {hf_cache_dir()}"
        run = f"on a machine with internet run `hf download {model_id} {self.hint_files}"
        if self.flag is None:
            return f"{run}` and copy {cache}{self.otherwise}"
        return f"{run} --local-dir DIR` and pass {self.flag} DIR (or copy {cache}){self.otherwise}"


def require_files(directory: Path, what: str, *alternatives: tuple[str, ...]) -> None:
    """Each of `alternatives` (file names, any one of which will do) must be in `directory`."""
    for names in alternatives:
        if not any((directory / name).is_file() for name in names):
            raise UserError(f"{what}: no {' or '.join(names)} in {directory}")


def require_safetensors(directory: Path, what: str) -> None:
    if not ((directory / "model.safetensors").is_file() or (directory / "model.safetensors.index.json").is_file()):
        raise UserError(
            f"{what}: no model.safetensors in {directory} (fashionrec reads safetensors weights only, "
            "never pickled .bin files)"
        )


def _check_text_model_dir(directory: Path, name: str) -> Path:
    require_files(directory, f"text model {name}", ("config.json",), ("tokenizer.json", "vocab.txt"))
    require_safetensors(directory, f"text model {name}")
    return directory


# What a BERT-family model needs from its Hugging Face repository: no pickled weights, no other formats.
TEXT_MODEL = HubFiles(
    what="text model",
    flag="--text-model",
    patterns=(
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        *SAFETENSORS_WEIGHTS,
    ),
    hint_files="config.json tokenizer.json tokenizer_config.json vocab.txt model.safetensors",
    check=_check_text_model_dir,
)


def resolve_hub_model(name_or_dir: str, files: HubFiles) -> Path:
    """A local directory as given, or the snapshot of Hugging Face model `name_or_dir`: from the cache when it
    holds the files, else downloaded (only `files.patterns`) unless offline."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return files.check(path, name_or_dir)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    cache, what, patterns = hf_cache_dir(), files.what, list(files.patterns)
    try:
        snapshot = Path(snapshot_download(name_or_dir, cache_dir=cache, allow_patterns=patterns, local_files_only=True))
        return files.check(snapshot, name_or_dir)
    except HFValidationError as e:
        raise UserError(f"{what} {name_or_dir!r} is neither a directory nor a Hugging Face model id") from e
    except Exception:  # not (completely) in the cache: download below, unless offline
        pass
    if offline():
        raise UserError(
            f"{what} {name_or_dir!r} is not in the Hugging Face cache {cache} and downloads are off "
            f"(HF_HUB_OFFLINE): {files.hint(name_or_dir)}"
        )
    try:
        snapshot = Path(snapshot_download(name_or_dir, cache_dir=cache, allow_patterns=patterns))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise UserError(f"{what} {name_or_dir!r}: not a directory, nor a Hugging Face model (or it is private)") from e
    except Exception as e:  # connection refused, timeout, proxy, incomplete download: all mean "fetch it by hand"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{what} {name_or_dir!r} could not be downloaded ({reason}); {files.hint(name_or_dir)}") from e
    return files.check(snapshot, name_or_dir)


def resolve_text_model(name_or_dir: str) -> Path:
    """A BERT-family text model: a directory, or a Hugging Face id (cache first, then downloaded)."""
    return resolve_hub_model(name_or_dir, TEXT_MODEL)


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
