"""One constructor for every preset, so that training, checkpoint loading, indexing and serving never name
a model class: the config's preset picks the family (`fashionrec.model.registry`), the family the class."""

from __future__ import annotations

from typing import Any, TypeAlias

from fashionrec.model.base import RetrievalModel
from fashionrec.model.config import ModelConfig
from fashionrec.model.registry import CreateRequest, family_of, preset_config

# Every family's model has one interface: encode_reference, encode_target, forward(batch), loss, config, tokenizer.
FashionModel: TypeAlias = RetrievalModel


def build_model(config: ModelConfig, tokenizer: Any) -> FashionModel:
    """A freshly initialised model of `config`'s architecture."""
    return family_of(config.preset).build(config, tokenizer)


def rebuild_model(config: dict[str, Any], tokenizer_json: str) -> FashionModel:
    """A freshly initialised model from a saved config and tokenizer (weights are loaded by the caller)."""
    model_config = ModelConfig.from_dict(config)
    family = family_of(model_config.preset)
    return family.build(model_config, family.tokenizer_from_json(tokenizer_json, model_config))


def create_model(preset: str, train_texts: Any = (), pretrained: bool = True, **names: str | None) -> FashionModel:
    """A new model of `preset` for training or `init`: its family fetches the tokenizer and, when
    `pretrained`, the weights, by the names in `names` (model, text_model, backbone_weights; see
    `fashionrec.model.registry.CreateRequest`)."""
    request = CreateRequest(train_texts=list(train_texts), pretrained=pretrained, **names)
    return family_of(preset).create(preset_config(preset), request)
