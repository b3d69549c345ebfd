"""The FashionVLP family (Goenka et al., CVPR 2022): presets `tiny` and `paper`. Its config also describes
the original system's model (`fashionrec.model.families.original`), which shares the architecture's fields.

Pretrained weights: the text encoder is a BERT-family model named by `--model` (or, as before `--model`
existed, `--text-model`), a directory or a Hugging Face id; the image backbone is torchvision's ImageNet
ResNet-50 or `--backbone-weights FILE` (`fashionrec.model.pretrained`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionrec.data.landmarks import NUM_LANDMARKS
from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.errors import UserError
from fashionrec.model.config import ModelConfig
from fashionrec.model.registry import CreateRequest, ModelFamily, register

# BERT architecture fields kept in the config; weights never travel here, only in state dicts.
BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
BERT_TINY = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "vocab_size": 1000,
}
BERT_KEYS = tuple(BERT_BASE)
TINY_VOCAB_SIZE = 1000


@dataclass(kw_only=True)
class FashionVLPConfig(ModelConfig):
    """Architecture of a FashionVLP-shaped model. `text` holds BERT config fields (no weights)."""

    backbone: str  # "tiny_cnn" | "resnet50"
    text: dict[str, Any] = field(default_factory=dict)
    max_text_len: int = 32
    num_landmarks: int = NUM_LANDMARKS
    dropout: float = 0.1
    # Where pretrained weights came from (information only: rebuilding needs the state dict, not these).
    text_model: str | None = None
    backbone_weights: str | None = None

    @property
    def d_model(self) -> int:
        """The fused sequence lives in BERT's hidden size, so d_model is the text model's hidden size."""
        return int(self.text["hidden_size"])


def tiny() -> FashionVLPConfig:
    """Small CNN + 2-layer BERT, random init, trains on a CPU in seconds."""
    return FashionVLPConfig(preset="tiny", backbone="tiny_cnn", image_size=64, text=dict(BERT_TINY), max_text_len=32)


def paper() -> FashionVLPConfig:
    """ResNet-50 + bert-base-uncased at 224 px, d_model 768, as in the FashionVLP paper."""
    return FashionVLPConfig(
        preset="paper",
        backbone="resnet50",
        image_size=224,
        text=dict(BERT_BASE),
        max_text_len=40,
        text_model="bert-base-uncased",
        # FashionVLP's landmark tokens need landmarks: MediaPipe body pose stands in for garment landmarks.
        preprocess=PreprocessConfig(landmarks="mediapipe").model_settings(),
    )


def bert_fields(directory: Path) -> dict[str, Any]:
    """The BERT architecture fields of a Hugging Face text model folder (other model types are refused)."""
    cfg = json.loads((directory / "config.json").read_text())
    if cfg.get("model_type") not in (None, "bert"):
        raise UserError(f"text model in {directory} is {cfg.get('model_type')!r}, not a BERT-family model")
    return {k: cfg[k] for k in BERT_KEYS if k in cfg}


def create_bert_model(
    config: FashionVLPConfig, request: CreateRequest, build: Callable[[FashionVLPConfig, Any], Any], vocab: str
) -> Any:
    """A FashionVLP-shaped model: BERT from `--model` (or `--text-model`, or the preset's, when pretrained);
    without one, a random-init text model whose vocabulary is trained on the captions (`vocab` "captions")
    or is bert-base-uncased's (`vocab` "bert", for models whose token ids must be BERT's). The ResNet-50
    gets ImageNet weights when pretrained."""
    from fashionrec.bertvocab import BERT_UNCASED, find_vocab
    from fashionrec.model import pretrained as weights
    from fashionrec.model.tokenizer import TextTokenizer

    named = request.model or request.text_model
    text_dir = None
    if named or (request.pretrained and config.text_model):
        text_dir = weights.resolve_text_model(named or config.text_model)
        config.text = bert_fields(text_dir)
        config.text_model = str(named or config.text_model)
        tokenizer = TextTokenizer.from_directory(text_dir, config.max_text_len)
    else:
        config.text_model = None
        if vocab == "bert":
            tokenizer = TextTokenizer.from_vocab(find_vocab(BERT_UNCASED), config.max_text_len)
        else:
            tokenizer = TextTokenizer.train_wordpiece(request.train_texts, TINY_VOCAB_SIZE, config.max_text_len)
        config.text = {**config.text, "vocab_size": tokenizer.vocab_size}
    backbone = None
    if request.pretrained and config.backbone == "resnet50":
        backbone = weights.resnet50_weights_file(request.backbone_weights)
        config.backbone_weights = str(backbone)
    model = build(config, tokenizer)
    if backbone is not None:
        try:
            model.load_backbone_weights(weights.read_backbone_state(backbone))
        except RuntimeError as e:  # strict load: missing or misshapen keys
            first = str(e).strip().splitlines()[0][:200]
            raise UserError(f"backbone weights {backbone} do not fit a ResNet-50: {first}") from e
    if text_dir is not None:
        model.load_text_weights(text_dir)
    return model


class FashionVLPFamily(ModelFamily):
    name = "fashionvlp"
    presets = {"tiny": tiny, "paper": paper}
    config_class = FashionVLPConfig

    def create(self, config: ModelConfig, request: CreateRequest) -> Any:
        return create_bert_model(config, request, self.build, vocab="captions")  # type: ignore[arg-type]

    def build(self, config: ModelConfig, tokenizer: Any) -> Any:
        from fashionrec.model.fashionvlp import FashionVLP

        return FashionVLP(config, tokenizer)  # type: ignore[arg-type]

    def tokenizer_from_json(self, text: str, config: ModelConfig) -> Any:
        from fashionrec.model.tokenizer import TextTokenizer

        return TextTokenizer.from_json(text, config.max_text_len)  # type: ignore[attr-defined]

    def parts(self, model: Any) -> dict[str, list]:
        return {"backbone": list(model.backbone.parameters()), "text": list(model.reference.bert.parameters())}


register(FashionVLPFamily())
