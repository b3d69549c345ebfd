"""Model configuration and presets. The config travels inside every checkpoint, so a model can be rebuilt
from the checkpoint alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fashionrec.errors import UserError

NUM_LANDMARKS = 14

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


@dataclass
class ModelConfig:
    """Architecture of one FashionVLP model. `text` holds BERT config fields (no weights)."""

    preset: str
    backbone: str  # "tiny_cnn" | "resnet50"
    image_size: int
    text: dict[str, Any] = field(default_factory=dict)
    max_text_len: int = 32
    num_landmarks: int = NUM_LANDMARKS
    temperature: float = 0.07
    dropout: float = 0.1
    # The image preprocessing the model was trained with (crop / landmark backends): serving must match it.
    preprocess: dict[str, Any] = field(
        default_factory=lambda: {"crop": "foreground", "landmarks": "none", "yolo_weights": None}
    )
    # Where pretrained weights came from (information only: rebuilding needs the state dict, not these).
    text_model: str | None = None
    backbone_weights: str | None = None

    @property
    def d_model(self) -> int:
        """The fused sequence lives in BERT's hidden size, so d_model is the text model's hidden size."""
        return int(self.text["hidden_size"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS = ("tiny", "paper", "original")
# The original system padded bert-base-uncased ids to 100 tokens; its checkpoints were trained on that length.
ORIGINAL_TEXT_LEN = 100


def preset_config(name: str) -> ModelConfig:
    """`tiny`: small CNN + 2-layer BERT, random init, trains on a CPU in seconds.
    `paper`: ResNet-50 + bert-base-uncased at 224 px, d_model 768, as in the FashionVLP paper.
    `original`: the original public system's architecture and forward, parameter for parameter, so its
    checkpoints load (see docs/original.md)."""
    if name == "tiny":
        return ModelConfig(preset="tiny", backbone="tiny_cnn", image_size=64, text=dict(BERT_TINY), max_text_len=32)
    if name == "paper":
        return ModelConfig(
            preset="paper",
            backbone="resnet50",
            image_size=224,
            text=dict(BERT_BASE),
            max_text_len=40,
            text_model="bert-base-uncased",
            # FashionVLP's landmark tokens need landmarks: MediaPipe body pose stands in for garment landmarks.
            preprocess={"crop": "foreground", "landmarks": "mediapipe", "yolo_weights": None},
        )
    if name == "original":
        return ModelConfig(
            preset="original",
            backbone="resnet50",
            image_size=224,
            text=dict(BERT_BASE),
            max_text_len=ORIGINAL_TEXT_LEN,
            text_model="bert-base-uncased",
            # Its own landmark detector and conventions; its YOLO crop needs the user's weights (--crop yolo).
            preprocess={"crop": "foreground", "landmarks": "original", "yolo_weights": None},
        )
    raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
