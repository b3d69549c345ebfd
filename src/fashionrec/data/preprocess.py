"""One image in, what the model eats out: the whole picture and the garment crop at the model's input
size (uint8; the model normalises), the crop box, and body landmarks with their mask."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fashionrec.data.crop import make_boxer
from fashionrec.data.landmarks import NUM_LANDMARKS, MediapipePose, no_landmarks
from fashionrec.data.landmarks_original import ORIGINAL, OriginalLandmarks
from fashionrec.errors import UserError

__all__ = ["CROPS", "LANDMARKS", "NUM_LANDMARKS", "PreprocessConfig", "PreprocessedImage", "Preprocessor"]

# Bump when the output of a given config changes (a new margin, a new resize filter): old caches go stale.
PREPROCESS_VERSION = 1
CROPS = ("none", "foreground", "yolo")
LANDMARKS = ("none", "mediapipe", ORIGINAL)
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class PreprocessConfig:
    """The settings an image's preprocessing depends on; `key()` names a cache of their results."""

    image_size: int = 224
    crop: str = "foreground"
    landmarks: str = "none"
    yolo_weights: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise UserError(f"--image-size must be an integer of at least 8, got {self.image_size!r}")
        if self.crop not in CROPS:
            raise UserError(f"unknown crop backend {self.crop!r} (choose from {', '.join(CROPS)})")
        if self.landmarks not in LANDMARKS:
            raise UserError(f"unknown landmarks backend {self.landmarks!r} (choose from {', '.join(LANDMARKS)})")
        if self.crop == "yolo" and not self.yolo_weights:
            raise UserError("--crop yolo needs --yolo-weights FILE")

    def to_dict(self) -> dict:
        return asdict(self)

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


@dataclass(frozen=True)
class PreprocessedImage:
    """The model-ready form of one image (shapes for input size S)."""

    image: np.ndarray  # uint8 [S, S, 3], the whole picture resized
    crop: np.ndarray  # uint8 [S, S, 3], the box resized
    box: np.ndarray  # float32 [4], x0, y0, x1, y1 in [0, 1] of the original
    landmarks: np.ndarray  # float32 [14, 2], x, y in [0, 1] of the model input frame
    landmark_mask: np.ndarray  # bool [14]
    # `--landmarks original` only (data/landmarks_original.py): `landmarks` are then the whole picture's points,
    # these the crop's (in [0, 1] of the crop) and the picture's width and height, for its other conventions.
    crop_landmarks: np.ndarray | None = None  # float32 [14, 2]
    crop_landmark_mask: np.ndarray | None = None  # bool [14]
    source_size: np.ndarray | None = None  # int32 [2]


class Preprocessor:
    """Runs the configured backends; heavy ones (YOLO, MediaPipe) load here, once, and fail early."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._boxer = make_boxer(config.crop, config.yolo_weights)
        self._landmarker = MediapipePose() if config.landmarks == "mediapipe" else None
        self._original = OriginalLandmarks(on_crop=config.crop == "yolo") if config.landmarks == ORIGINAL else None

    def process(self, image: Image.Image) -> PreprocessedImage:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        size = (self.config.image_size, self.config.image_size)
        box = self._boxer(rgb)
        w, h = rgb.size
        # At least one source pixel, so a degenerate box still yields a picture.
        x0, y0 = min(box[0] * w, w - 1.0), min(box[1] * h, h - 1.0)
        source = (x0, y0, max(box[2] * w, x0 + 1.0), max(box[3] * h, y0 + 1.0))
        whole = np.array(rgb.resize(size, RESAMPLE), dtype=np.uint8)  # writable, unlike asarray
        crop = np.array(rgb.resize(size, RESAMPLE, box=source), dtype=np.uint8)
        box = np.asarray(box, np.float32)
        if self._original is not None:
            return PreprocessedImage(whole, crop, box, **self._original(rgb, box))
        points, mask = no_landmarks() if self._landmarker is None else self._landmarker(np.asarray(rgb))
        return PreprocessedImage(whole, crop, box, points, mask)
