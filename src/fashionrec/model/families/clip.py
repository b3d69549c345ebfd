"""The CLIP family: presets `clip` (zero-shot: CLIP4Cir's sum of image and text features) and `clip4cir`
(CLIP4Cir's Combiner, trained). `--model` names the CLIP or SigLIP to start from, through open_clip or
transformers (`fashionrec.model.clip_sources`); the config records that library's architecture config, so
the model is rebuilt from a checkpoint or model directory with nothing fetched.

Parts: "backbone" is the image encoder, "text" the text encoder. Both are frozen unless given a learning
rate (`--backbone-lr`, `--text-lr`); the trainer then caches their outputs (train/features.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.model.config import ModelConfig
from fashionrec.model.registry import CreateRequest, ModelFamily, register

# CLIP4Cir trained its Combiner on OpenAI's RN50x4 CLIP; ViT-B-32 is the lighter default for serving as is.
DEFAULT_MODELS = {"clip": "ViT-B-32/openai", "clip4cir": "RN50x4/openai"}
# CLIP4Cir's Combiner: projection 4 x and hidden layer 8 x the feature width (2560 and 5120 for RN50x4's 640).
PROJECTION_FACTOR, HIDDEN_FACTOR, COMBINER_DROPOUT = 4, 8, 0.5
CLIP4CIR_TEMPERATURE = 0.01  # its logit scale of 100, in both of its training stages


@dataclass(kw_only=True)
class ClipConfig(ModelConfig):
    """`library` ("open_clip" or "transformers") and `architecture` (that library's model config) rebuild
    the CLIP model; `combiner` (projection_dim, hidden_dim, dropout) is the clip4cir preset's head."""

    library: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 0
    context_length: int = 77
    model: str | None = None  # the name it was made from (information only)
    combiner: dict[str, Any] | None = None
    temperature: float = CLIP4CIR_TEMPERATURE

    @property
    def d_model(self) -> int:
        return self.embed_dim


def clip() -> ClipConfig:
    return ClipConfig(preset="clip", image_size=224, preprocess=PreprocessConfig(crop="none").model_settings())


def clip4cir() -> ClipConfig:
    """CLIP4Cir's preprocessing: "targetpad" with a 1.25 aspect ratio."""
    settings = PreprocessConfig(crop="none", resize="targetpad").model_settings()
    return ClipConfig(preset="clip4cir", image_size=224, preprocess=settings, combiner={})


class ClipFamily(ModelFamily):
    name = "clip"
    presets = {"clip": clip, "clip4cir": clip4cir}
    config_class = ClipConfig
    frozen_by_default = True

    def create(self, config: ModelConfig, request: CreateRequest) -> Any:
        from fashionrec.model.clip_sources import resolve

        assert isinstance(config, ClipConfig)
        name = request.model or DEFAULT_MODELS[config.preset]
        source = resolve(name, request.pretrained)
        config.library, config.architecture, config.model = source.library, source.architecture, name
        config.embed_dim, config.context_length, config.image_size = (
            source.embed_dim,
            source.context_length,
            source.image_size,
        )
        keep = {"resize": config.preprocess["resize"]} if config.preprocess.get("resize") == "targetpad" else {}
        config.preprocess = {**config.preprocess, **source.preprocess, **keep}
        if config.combiner is not None:
            d = config.embed_dim
            config.combiner = {
                "projection_dim": PROJECTION_FACTOR * d,
                "hidden_dim": HIDDEN_FACTOR * d,
                "dropout": COMBINER_DROPOUT,
            }
        from fashionrec.model.clip import ClipRetrieval

        return ClipRetrieval(config, source.tokenizer, source.model)

    def build(self, config: ModelConfig, tokenizer: Any) -> Any:
        from fashionrec.model.clip import ClipRetrieval

        return ClipRetrieval(config, tokenizer)  # type: ignore[arg-type]

    def tokenizer_from_json(self, text: str, config: ModelConfig) -> Any:
        from fashionrec.model.clip_tokenizer import ClipTokenizer

        return ClipTokenizer.from_json(text)

    def parts(self, model: Any) -> dict[str, list]:
        return {part: model.encoder.part_parameters(part) for part in ("backbone", "text")}


register(ClipFamily())
