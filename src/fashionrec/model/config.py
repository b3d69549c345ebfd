"""Model configuration. The config travels inside every checkpoint and model directory, so a model can be
rebuilt from it alone. `ModelConfig` holds what every family has; each family's config class (its module in
`fashionrec.model.families`) adds its own fields, and `from_dict` gives a saved config back as that class,
every field included."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.errors import UserError


@dataclass(kw_only=True)
class ModelConfig:
    """`preset` names the model's family (see `fashionrec.model.registry`). `preprocess` holds the image
    preprocessing the model was made for (crop and landmark backends, resize rule, pixel mean and std; the
    input size is `image_size`): every place that feeds the model builds its input from it."""

    preset: str
    image_size: int
    temperature: float = 0.07
    preprocess: dict[str, Any] = field(default_factory=lambda: PreprocessConfig().model_settings())

    @property
    def d_model(self) -> int:
        """The width of the embeddings the model returns."""
        raise NotImplementedError

    def preprocess_config(self, **overrides: Any) -> PreprocessConfig:
        """This model's preprocessing (settings it does not record take their defaults), with `overrides`
        (None values ignored)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return PreprocessConfig(image_size=self.image_size, **{**self.preprocess, **given})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The config of `d`'s preset's family, every field it saved included; a field that family does not
        know means the file was written by another version or family, and is refused."""
        from fashionrec.model.registry import family_of

        if "preset" not in d:
            raise UserError("the model config names no preset")
        config_class = family_of(d["preset"]).config_class
        known = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(
                f"the {d['preset']} model config has settings this fashionrec does not know: {', '.join(unknown)} "
                "(written by a newer version?)"
            )
        return config_class(**d)


def preset_config(name: str) -> ModelConfig:
    """A fresh config of preset `name` (see `fashionrec.model.registry`)."""
    from fashionrec.model.registry import preset_config as registered

    return registered(name)
