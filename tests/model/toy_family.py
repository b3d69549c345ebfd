"""A model family defined outside the package, as a third party would: one module that registers a preset,
its config, builder, tokenizer and named parts. Nothing else in fashionrec knows it. The model is tiny on
purpose: mean colours of the picture and the garment crop, and a bag of hashed words."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fashionrec.model import ModelFamily, register
from fashionrec.model.base import RetrievalModel
from fashionrec.model.config import ModelConfig
from fashionrec.model.registry import CreateRequest


@dataclass(kw_only=True)
class ToyConfig(ModelConfig):
    width: int = 16
    buckets: int = 64  # hashed word ids
    words: int = 8  # tokens per caption

    @property
    def d_model(self) -> int:
        return self.width


class HashTokenizer:
    """Words hashed into `buckets` ids (0 is padding), `words` per caption."""

    def __init__(self, buckets: int, words: int):
        self.buckets, self.words = buckets, words

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        ids = [1 + zlib.crc32(w.encode()) % (self.buckets - 1) for w in text.lower().split()][: self.words]
        pad = self.words - len(ids)
        return ids + [0] * pad, [1] * len(ids) + [0] * pad

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = zip(*(self.encode(t) for t in texts), strict=True)
        return torch.tensor(ids), torch.tensor(mask)

    def to_json(self) -> str:
        return json.dumps({"buckets": self.buckets, "words": self.words})


class ToyModel(RetrievalModel):
    def __init__(self, config: ToyConfig, tokenizer: HashTokenizer):
        super().__init__(config, tokenizer)
        self.image = nn.Linear(6, config.width)  # "backbone": mean colour of the picture and of the crop
        self.words = nn.EmbeddingBag(config.buckets, config.width, mode="sum", padding_idx=0)  # "text"
        self.mix = nn.Linear(2 * config.width, config.width)  # "heads"

    def _image(self, image: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
        colours = torch.cat([self.normalise(image).mean((2, 3)), self.normalise(crop).mean((2, 3))], dim=1)
        return self.image(colours)

    def encode_reference(self, image, crop, landmarks, landmark_mask, input_ids, attention_mask):
        text = self.words(input_ids)
        return F.normalize(self.mix(torch.cat([self._image(image, crop), text], dim=1)), dim=-1)

    def encode_target(self, image, crop, landmarks, landmark_mask):
        return F.normalize(self._image(image, crop), dim=-1)


def toy() -> ToyConfig:
    return ToyConfig(preset="toy", image_size=32)


class ToyFamily(ModelFamily):
    name = "toy"
    presets = {"toy": toy}
    config_class = ToyConfig

    def create(self, config: ModelConfig, request: CreateRequest) -> Any:
        assert isinstance(config, ToyConfig)
        return self.build(config, HashTokenizer(config.buckets, config.words))

    def build(self, config: ModelConfig, tokenizer: Any) -> Any:
        return ToyModel(config, tokenizer)  # type: ignore[arg-type]

    def tokenizer_from_json(self, text: str, config: ModelConfig) -> Any:
        return HashTokenizer(**json.loads(text))

    def parts(self, model: Any) -> dict[str, list]:
        return {"backbone": list(model.image.parameters()), "text": list(model.words.parameters())}


register(ToyFamily())
