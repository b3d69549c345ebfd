"""FashionVLP model library: no training code imported here."""

from fashionrec.model.config import NUM_LANDMARKS, ModelConfig, preset_config
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.model.hub import from_pretrained, load_model, save_pretrained
from fashionrec.model.pretrained import create_model
from fashionrec.model.tokenizer import TextTokenizer

__all__ = [
    "NUM_LANDMARKS",
    "FashionVLP",
    "ModelConfig",
    "TextTokenizer",
    "create_model",
    "from_pretrained",
    "load_model",
    "preset_config",
    "save_pretrained",
]
