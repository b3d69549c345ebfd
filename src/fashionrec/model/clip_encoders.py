"""A CLIP-family model of either library (open_clip, transformers) seen as two encoders: images -> raw image
features, token ids -> raw text features (the library's own projections applied, not normalised). The
library's model sits under `model`, its parameter names unchanged, and is rebuilt from its architecture
config alone (nothing downloaded), so a fashionrec checkpoint or model directory carries everything."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from fashionrec.errors import UserError

OPEN_CLIP = "open_clip"
TRANSFORMERS = "transformers"
HF_TYPES = ("clip", "siglip")  # the transformers model types read as CLIP-family models
# Top-level parameter names of each part, across both libraries (open_clip's CLIP keeps its text tower's
# parts at the top, its CustomTextCLIP under `text`; transformers' CLIP and SigLIP use the `*_model` names).
PART_PREFIXES = {
    "backbone": ("visual", "vision_model", "visual_projection"),
    "text": (
        "transformer",
        "token_embedding",
        "positional_embedding",
        "ln_final",
        "text_projection",
        "text",
        "text_model",
    ),
}


def _in_part(name: str, part: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PART_PREFIXES[part])


def build_open_clip(architecture: dict[str, Any]) -> nn.Module:
    """An open_clip CLIP (or CustomTextCLIP) of a model config, randomly initialised; towers that would fetch
    base weights (timm, Hugging Face text) are told not to."""
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(architecture)
    if "multimodal_cfg" in cfg:
        raise UserError("open_clip CoCa models are captioners, not CLIP-family retrieval models")
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    return (CustomTextCLIP if custom else CLIP)(**cfg)


def build_transformers(architecture: dict[str, Any]) -> nn.Module:
    """A transformers CLIP or SigLIP model of a config dict (`config.to_dict()`), randomly initialised."""
    from transformers import AutoConfig, AutoModel

    kind = architecture.get("model_type")
    if kind not in HF_TYPES:
        raise UserError(
            f"a {kind!r} model is not a CLIP-family model fashionrec reads (it reads: {', '.join(HF_TYPES)})"
        )
    settings = {k: v for k, v in architecture.items() if k != "model_type"}
    return AutoModel.from_config(AutoConfig.for_model(kind, **settings)).float()


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns the projected features as `pooler_output` of an output object, 4.x as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipEncoder(nn.Module):
    """The two encoders of `model`, a CLIP-family model of `library`: the one given (weights loaded), or a
    new one of `architecture`."""

    def __init__(self, library: str, architecture: dict[str, Any], model: nn.Module | None = None):
        super().__init__()
        if library not in (OPEN_CLIP, TRANSFORMERS):
            raise UserError(f"unknown CLIP library {library!r} (fashionrec reads {OPEN_CLIP} and {TRANSFORMERS})")
        self.library = library
        if model is None:
            model = build_open_clip(architecture) if library == OPEN_CLIP else build_transformers(architecture)
        self.model = model
        for name, p in self.model.named_parameters():  # the logit scale and bias: no part, never trained here
            if not (_in_part(name, "backbone") or _in_part(name, "text")):
                p.requires_grad_(False)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.library == OPEN_CLIP:
            return self.model.encode_image(pixels)
        return _features(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.library == OPEN_CLIP:
            return self.model.encode_text(input_ids)
        return _features(self.model.get_text_features(input_ids=input_ids))

    def part_parameters(self, part: str) -> list[nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if _in_part(name, part)]

    def part_modules(self, part: str) -> Iterator[nn.Module]:
        return (m for name, m in self.model.named_children() if _in_part(name, part))

    def part_state(self, part: str) -> dict[str, torch.Tensor]:
        """Every tensor (weights and buffers, e.g. BatchNorm statistics) of one part: what its output depends on."""
        return {name: t for name, t in self.model.state_dict().items() if _in_part(name, part)}
