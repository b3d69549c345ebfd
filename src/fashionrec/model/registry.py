"""Model families. A family (FashionVLP, the original system's model, CLIP) is one module that defines a
`ModelFamily` and `register`s it: its presets, config class, builder, tokenizer, how pretrained weights are
fetched, its named parameter parts (for per-part learning rates) and, if it has one, the foreign checkpoint
format it converts. Everything else (training, checkpoints, `save_pretrained`, index, serve) finds a model's
family here by the config's preset and never names a model class.

The built-in families are the modules of BUILTIN_FAMILIES; others register from their own module, and are
found by the CLI through the `fashionrec.model_families` entry-point group (an entry point names the module,
which registers on import). Family modules stay light on import (no torch models, no transformers): the
command line lists the presets before anything heavy loads."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fashionrec.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from fashionrec.model.config import ModelConfig

BUILTIN_FAMILIES = (
    "fashionrec.model.families.fashionvlp",
    "fashionrec.model.families.original",
    "fashionrec.model.families.clip",
)
ENTRY_POINT_GROUP = "fashionrec.model_families"
# The parts a family may name, each with the flag that sets its peak learning rate.
PART_FLAGS = {"backbone": "--backbone-lr", "text": "--text-lr"}


@dataclass(frozen=True)
class CreateRequest:
    """What a fresh model for training (or `init`) is made from."""

    train_texts: Sequence[str] = ()  # captions: random-init vocabularies are built from them
    pretrained: bool = True  # start from pretrained weights (fetched by name) or random ones
    model: str | None = None  # --model: the pretrained model to start from, as the family reads it
    text_model: str | None = None  # --text-model: where bert-base-uncased's vocabulary is
    backbone_weights: str | None = None  # --backbone-weights: an image backbone weights file


class ModelFamily:
    """One family of models. Subclass it, set the attributes, implement the methods, `register` an instance."""

    name: str = ""
    presets: Mapping[str, Callable[[], ModelConfig]] = {}  # preset name -> a fresh config of it
    config_class: type[ModelConfig]
    # Parts (PART_FLAGS) given no learning rate of their own: trained at --lr (False) or frozen (True).
    frozen_by_default: bool = False
    foreign: str = ""  # who wrote the foreign checkpoint files `reads` accepts, for the note on reading them

    def create(self, config: ModelConfig, request: CreateRequest) -> nn.Module:
        """A new model of `config`'s preset: tokenizer and (with `request.pretrained`) weights fetched by name."""
        raise NotImplementedError

    def build(self, config: ModelConfig, tokenizer: Any) -> nn.Module:
        """The architecture of `config`, freshly initialised (weights are loaded by the caller)."""
        raise NotImplementedError

    def tokenizer_from_json(self, text: str, config: ModelConfig) -> Any:
        """The tokenizer saved with a model (`model.tokenizer.to_json()`)."""
        raise NotImplementedError

    def parts(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The model's pretrained parts by PART_FLAGS name; every other parameter is a "heads" parameter."""
        return {}

    def reads(self, data: Any) -> bool:
        """Whether `data` (a loaded checkpoint file) is in a foreign format this family converts."""
        return False

    def convert(self, data: Any, source: str, text_model: str | None) -> dict[str, Any]:
        """fashionrec's checkpoint layout for a file `reads` accepted."""
        raise NotImplementedError


_families: dict[str, ModelFamily] = {}
_preset_owner: dict[str, str] = {}
_loaded = False


def register(family: ModelFamily) -> ModelFamily:
    """Add a family (again: replace it); its presets must not belong to another family."""
    for preset in family.presets:
        owner = _preset_owner.get(preset)
        if owner is not None and owner != family.name:
            raise ValueError(f"preset {preset!r} of family {family.name!r} already belongs to family {owner!r}")
    old = _families.get(family.name)
    for preset in old.presets if old else ():
        _preset_owner.pop(preset, None)
    _families[family.name] = family
    _preset_owner.update(dict.fromkeys(family.presets, family.name))
    return family


def unregister(name: str) -> None:
    """Remove family `name` and its presets (a program or test that registered one for a while)."""
    family = _families.pop(name)
    for preset in family.presets:
        _preset_owner.pop(preset, None)


def _load() -> None:
    """Import the built-in family modules and those named by installed entry points, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_FAMILIES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def families() -> list[ModelFamily]:
    _load()
    return list(_families.values())


def preset_names() -> tuple[str, ...]:
    _load()
    return tuple(_preset_owner)


def family_of(preset: str) -> ModelFamily:
    _load()
    if preset not in _preset_owner:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(_preset_owner)}")
    return _families[_preset_owner[preset]]


def preset_config(preset: str) -> ModelConfig:
    return family_of(preset).presets[preset]()


class PresetNames(Sequence[str]):
    """The registered preset names, read when used (argparse `choices`): a family registered after the
    parser module was imported still counts."""

    def __iter__(self) -> Iterator[str]:
        return iter(preset_names())

    def __len__(self) -> int:
        return len(preset_names())

    def __getitem__(self, index):  # type: ignore[override]
        return preset_names()[index]

    def __contains__(self, name: object) -> bool:
        return name in preset_names()
