"""CLIP-family models by name (`--model`), through either library, with the same cache-first, offline-aware
fetching as every other pretrained weight (`fashionrec.model.pretrained`, `fashionrec.hfcache`):

- open_clip: `NAME/TAG` where NAME is an open_clip model (`RN50x4`, `ViT-B-32`, `ViT-B-16-SigLIP`, ...) and
  TAG one of its pretrained tags (`openai`, `laion2b_s34b_b79k`, `webli`, ...); `open_clip:NAME/TAG` says so
  explicitly. open_clip serves the weights from the Hugging Face hub (`open_clip_model.safetensors`, else
  `open_clip_pytorch_model.bin`, read with `weights_only`); a tokenizer kept on the hub (SigLIP's) is
  fetched with them. Without a tag the model starts from random weights (`--no-pretrained` only).
- transformers: a CLIP or SigLIP Hugging Face id or `save_pretrained` folder (`hf:ID` says so explicitly):
  config.json, preprocessor_config.json, the tokenizer files and model.safetensors.
- a fashionrec model of the CLIP family (a model directory or a training checkpoint): its CLIP model, as
  trained (CLIP4Cir's second stage starts from the first's fine-tuned encoders).

Each gives the architecture, the weights, the tokenizer and the preprocessing the model was trained with:
input size, resize rule ("shortest" side + centre crop for CLIP, "square" for SigLIP), filter, mean, std."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fashionrec.data.jsonfile import read_json
from fashionrec.errors import UserError
from fashionrec.model.clip_encoders import HF_TYPES, OPEN_CLIP, TRANSFORMERS, build_open_clip, build_transformers
from fashionrec.model.clip_tokenizer import ClipTokenizer
from fashionrec.model.pretrained import (
    SAFETENSORS_WEIGHTS,
    HubFiles,
    require_files,
    require_safetensors,
    resolve_hub_model,
)

OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # preferred first
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
)
RESAMPLE_CODES = {2: "bilinear", 3: "bicubic"}  # PIL's codes, as preprocessor_config.json writes them
RESIZE_MODES = {"shortest": "shortest", "squash": "square"}  # open_clip's resize modes fashionrec has


@dataclass
class Source:
    """A CLIP-family model ready to wrap: the library's model (weights loaded, or random), how to rebuild it,
    its tokenizer and its preprocessing (PreprocessConfig fields)."""

    library: str
    architecture: dict[str, Any]
    model: nn.Module
    tokenizer: ClipTokenizer
    embed_dim: int
    context_length: int
    image_size: int
    preprocess: dict[str, Any]


def resolve(name: str, pretrained: bool) -> Source:
    """The model `name` names (see the module doc)."""
    path = Path(name).expanduser()
    if path.is_file() or (path.is_dir() and (path / "config.json").is_file() and _is_fashionrec(path)):
        return fashionrec_source(path)
    if name.startswith("hf:"):
        return transformers_source(name[3:], pretrained)
    if name.startswith("open_clip:"):
        return open_clip_source(name[len("open_clip:") :], pretrained)
    if not path.is_dir():
        import open_clip

        if name.split("/", 1)[0] in open_clip.list_models():
            return open_clip_source(name, pretrained)
    return transformers_source(name, pretrained)


def _is_fashionrec(folder: Path) -> bool:
    config = read_json(folder / "config.json")
    return isinstance(config, dict) and "preset" in config


# ---- a fashionrec model ------------------------------------------------------------------------------------
def fashionrec_source(path: Path) -> Source:
    from fashionrec.model.hub import load_model

    model = load_model(path)
    config = model.config
    if not hasattr(model, "encoder") or not hasattr(config, "library"):
        raise UserError(f"{path} holds a {config.preset} model, not one of the CLIP family: its --model cannot be it")
    settings = {k: config.preprocess[k] for k in ("resize", "resample", "mean", "std") if k in config.preprocess}
    return Source(
        config.library,
        config.architecture,
        model.encoder.model,
        model.tokenizer,
        config.embed_dim,
        config.context_length,
        config.image_size,
        settings,
    )


# ---- open_clip ---------------------------------------------------------------------------------------------
def open_clip_source(name: str, pretrained: bool) -> Source:
    import open_clip
    from open_clip.transform import PreprocessCfg

    model_name, _, tag = name.partition("/")
    architecture = open_clip.get_model_config(model_name)
    if architecture is None:
        raise UserError(f"{model_name!r} is not an open_clip model (open_clip.list_models() lists them)")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained and not tag:
        choices = ", ".join(tags) or "none: it has no pretrained weights, use --no-pretrained"
        raise UserError(f"--model {model_name} needs a pretrained tag: {model_name}/TAG with TAG one of: {choices}")
    weights_cfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    if tag and not weights_cfg:
        raise UserError(f"{tag!r} is not a pretrained tag of open_clip's {model_name} (its tags: {', '.join(tags)})")
    if weights_cfg.get("quick_gelu"):  # the weights were trained with QuickGELU (OpenAI's): the model must use it
        architecture["quick_gelu"] = True
    text_cfg = architecture["text_cfg"]
    context_length = int(text_cfg.get("context_length", 77))
    tokenizer_repo = text_cfg.get("hf_tokenizer_name")
    kwargs = text_cfg.get("tokenizer_kwargs", {})
    if tokenizer_repo:
        folder = resolve_hub_model(tokenizer_repo, TOKENIZER)
        tokenizer = ClipTokenizer.open_clip_hf(folder, context_length, kwargs)
    else:
        tokenizer = ClipTokenizer.open_clip_simple(context_length, kwargs)
    weights = open_clip_weights(model_name, tag, weights_cfg) if pretrained else None  # before the slow build
    model = build_open_clip(architecture)
    if weights is not None:
        open_clip.load_checkpoint(model, str(weights), strict=True)
    defaults = PreprocessCfg()
    mode = weights_cfg.get("resize_mode", defaults.resize_mode)
    if mode not in RESIZE_MODES:
        raise UserError(f"open_clip's {name} resizes by {mode!r}, a rule fashionrec does not have")
    size = architecture["vision_cfg"]["image_size"]
    return Source(
        OPEN_CLIP,
        architecture,
        model,
        tokenizer,
        int(architecture["embed_dim"]),
        context_length,
        int(size if isinstance(size, int) else size[0]),
        {
            "resize": RESIZE_MODES[mode],
            "resample": weights_cfg.get("interpolation", defaults.interpolation),
            "mean": list(weights_cfg.get("mean", defaults.mean)),
            "std": list(weights_cfg.get("std", defaults.std)),
        },
    )


def open_clip_weights(model_name: str, tag: str, weights_cfg: dict[str, Any]) -> Path:
    """The weights file of an open_clip pretrained tag, from its Hugging Face repository (`hf_hub` is
    "org/repo/" or "org/repo/file")."""
    hub = weights_cfg.get("hf_hub", "")
    if not hub:
        raise UserError(f"open_clip's {model_name}/{tag} has no Hugging Face copy of its weights to fetch")
    parts = hub.split("/")
    repo, file_name = "/".join(parts[:2]), "/".join(parts[2:])
    names = (file_name,) if file_name else OPEN_CLIP_WEIGHTS

    def check(folder: Path, _: str) -> Path:
        require_files(folder, f"open_clip weights {model_name}/{tag}", names)
        return folder

    what = f"open_clip weights of {model_name}/{tag}: repository"
    folder = resolve_hub_model(repo, HubFiles(what=what, flag=None, patterns=names, hint_files=names[0], check=check))
    return next(folder / n for n in names if (folder / n).is_file())


# ---- transformers ------------------------------------------------------------------------------------------
def _check_tokenizer(folder: Path, name: str) -> Path:
    require_files(folder, f"tokenizer {name}", ("tokenizer.json", "vocab.json", "spiece.model"))
    return folder


# The tokenizer open_clip keeps on the Hub for some models (SigLIP's): needed with random weights too.
TOKENIZER = HubFiles(
    what="tokenizer",
    flag=None,
    patterns=TOKENIZER_FILES,
    hint_files="tokenizer.json tokenizer_config.json special_tokens_map.json",
    check=_check_tokenizer,
    otherwise="",
)


def _check_hf_model(folder: Path, name: str) -> Path:
    what = f"model {name}"
    require_files(folder, what, ("config.json",), ("preprocessor_config.json",))
    _check_tokenizer(folder, name)
    require_safetensors(folder, what)
    return folder


HF_MODEL = HubFiles(
    what="model",
    flag="--model",
    patterns=("config.json", "preprocessor_config.json", *TOKENIZER_FILES, *SAFETENSORS_WEIGHTS),
    hint_files="config.json preprocessor_config.json tokenizer.json tokenizer_config.json model.safetensors",
    check=_check_hf_model,
)


def transformers_source(name: str, pretrained: bool) -> Source:
    folder = resolve_hub_model(name, HF_MODEL)
    config = read_json(folder / "config.json")
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in HF_TYPES:
        raise UserError(f"{name} is a {kind!r} model, not a CLIP-family model fashionrec reads ({', '.join(HF_TYPES)})")
    if pretrained:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).float()
    else:
        model = build_transformers(config)
    architecture = model.config.to_dict()
    embed_dim = architecture.get("projection_dim") or architecture["vision_config"]["hidden_size"]
    context_length = int(architecture["text_config"]["max_position_embeddings"])
    image_size, preprocess = _hf_preprocessing(folder, name)
    tokenizer = ClipTokenizer.transformers(folder, context_length)
    return Source(TRANSFORMERS, architecture, model, tokenizer, int(embed_dim), context_length, image_size, preprocess)


def _size(value: Any, key: str) -> Any:
    """A field of an image processor's size (a dict in transformers 4, a SizeDict in 5; None if absent)."""
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


def _hf_preprocessing(folder: Path, name: str) -> tuple[int, dict[str, Any]]:
    """Input size and PreprocessConfig fields of a model's image processor (read by transformers, which
    also understands the older preprocessor_config.json forms): CLIP's shortest edge + centre crop, or
    SigLIP's resize to a square."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    if _size(size, "shortest_edge") and getattr(processor, "do_center_crop", False) and _size(crop, "height"):
        side, resize = int(_size(crop, "height")), "shortest"
    elif _size(size, "height") and _size(size, "height") == _size(size, "width"):
        side, resize = int(_size(size, "height")), "square"
    else:
        raise UserError(f"{name}: its image processor's size {size} is not a rule fashionrec has")
    resample = RESAMPLE_CODES.get(int(getattr(processor, "resample", 3)))
    if resample is None:
        raise UserError(f"{name}: its resampling filter {processor.resample!r} is not one fashionrec has")
    settings = {"resize": resize, "resample": resample}
    settings.update({k: list(getattr(processor, f"image_{k}")) for k in ("mean", "std")})
    return side, settings
