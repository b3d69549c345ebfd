"""The preprocessing settings, in one place: what each setting may be, its default, and the key that names
a cache of their results. Data (the cache), model (the config every model carries), train, index, serve and
the command-line options all read them from here. Light on purpose: the CLI imports it to parse flags.

A backend or rule is added here (its name) and where it runs (`preprocess.py`, `crop.py`, `landmarks.py`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fashionrec.errors import UserError

# Bump when the output of a given config changes (a new margin, a new resize filter): old caches go stale,
# and indexes built before are refused with the line that says to rebuild them.
PREPROCESS_VERSION = 2
CROPS = ("none", "foreground", "yolo")
LANDMARKS = ("none", "mediapipe", "original")
# How a picture becomes the model's square input:
#   square     the whole picture resized to S x S (aspect ratio not kept): FashionVLP, SigLIP
#   shortest   the shortest side resized to S, then the centre S x S: CLIP
#   targetpad  the shorter side padded with black until long / short <= TARGET_RATIO, then `shortest`: CLIP4Cir
RESIZES = ("square", "shortest", "targetpad")
TARGET_RATIO = 1.25
RESAMPLES = ("bilinear", "bicubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """The settings an image's preprocessing depends on, and the pixel normalisation of the model that eats
    it (applied by the model: images travel as uint8); `key()` names a cache of their results."""

    image_size: int = 224
    crop: str = "foreground"
    landmarks: str = "none"
    yolo_weights: str | None = None
    resize: str = "square"
    resample: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise UserError(f"--image-size must be an integer of at least 8, got {self.image_size!r}")
        for name, value, allowed in (
            ("crop backend", self.crop, CROPS),
            ("landmarks backend", self.landmarks, LANDMARKS),
            ("resize rule", self.resize, RESIZES),
            ("resampling filter", self.resample, RESAMPLES),
        ):
            if value not in allowed:
                raise UserError(f"unknown {name} {value!r} (choose from {', '.join(allowed)})")
        if self.crop == "yolo" and not self.yolo_weights:
            raise UserError("--crop yolo needs --yolo-weights FILE")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, int | float) for v in value):
                raise UserError(f"pixel {name} must be three numbers (R, G, B), got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))  # JSON gives lists
        if min(self.std) <= 0:
            raise UserError(f"pixel std must be above 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def model_settings(self) -> dict[str, Any]:
        """What a model config keeps under `preprocess` (its image size is an architecture field)."""
        return {k: v for k, v in self.to_dict().items() if k != "image_size"}

    def key(self) -> str:
        """A stable hash of everything the output depends on, including the YOLO weights file's identity
        (so replacing the weights at the same path re-processes) and ignoring weights when unused."""
        settings: dict = {**self.to_dict(), "version": PREPROCESS_VERSION, "yolo_weights": None}
        if self.crop == "yolo":
            weights = Path(str(self.yolo_weights)).resolve()
            settings["yolo_weights"] = str(weights)
            if weights.is_file():
                stat = weights.stat()
                settings["yolo_weights_file"] = [stat.st_size, stat.st_mtime_ns]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
