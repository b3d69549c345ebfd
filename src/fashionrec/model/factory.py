"""One constructor for every preset, so that training, checkpoint loading, indexing and serving never name
a model class: the config's preset picks it."""

from __future__ import annotations

from typing import TypeAlias

from fashionrec.model.config import ModelConfig
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.model.original import OriginalFashionVLP
from fashionrec.model.tokenizer import TextTokenizer

# Both classes share one interface: encode_reference, encode_target, forward(batch), loss, config, tokenizer.
FashionModel: TypeAlias = FashionVLP | OriginalFashionVLP


def build_model(config: ModelConfig, tokenizer: TextTokenizer) -> FashionModel:
    """A freshly initialised model of `config`'s architecture."""
    if config.preset == "original":
        return OriginalFashionVLP(config, tokenizer)
    return FashionVLP(config, tokenizer)
