"""One image in, what the model eats out: the whole picture and the garment crop at the model's input
size (uint8; the model normalises), the crop box, and body landmarks with their mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from fashionrec.data.crop import make_boxer
from fashionrec.data.landmarks import NUM_LANDMARKS, MediapipePose, no_landmarks
from fashionrec.data.landmarks_original import ORIGINAL, OriginalLandmarks
from fashionrec.data.preprocess_config import CROPS, LANDMARKS, TARGET_RATIO, PreprocessConfig

__all__ = ["CROPS", "LANDMARKS", "NUM_LANDMARKS", "PreprocessConfig", "PreprocessedImage", "Preprocessor"]

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
Box = tuple[float, float, float, float]


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
        box = self._boxer(rgb)
        w, h = rgb.size
        # At least one source pixel, so a degenerate box still yields a picture.
        x0, y0 = min(box[0] * w, w - 1.0), min(box[1] * h, h - 1.0)
        source = (x0, y0, max(box[2] * w, x0 + 1.0), max(box[3] * h, y0 + 1.0))
        whole, frame = self._fit(rgb)
        crop = self._fit_region(rgb, source)
        if self._original is not None:  # the original system's points and conventions (square inputs, as its own)
            return PreprocessedImage(whole, crop, np.asarray(box, np.float32), **self._original(rgb, np.asarray(box)))
        if self._landmarker is None:
            points, mask = no_landmarks()
        else:
            points, mask = self._landmarker(np.asarray(rgb))
            if self.config.resize != "square":
                points, mask = to_frame(points, mask, frame, w, h)
        return PreprocessedImage(whole, crop, np.asarray(box, np.float32), points, mask)

    def _fit(self, rgb: Image.Image) -> tuple[np.ndarray, Box]:
        """The whole picture as the model's square input, and the region of `rgb` (pixel coordinates, beyond
        its edges where it was padded) that the input shows."""
        side, resample = self.config.image_size, RESAMPLE[self.config.resample]
        if self.config.resize == "square":
            return np.array(rgb.resize((side, side), resample), dtype=np.uint8), (0.0, 0.0, *rgb.size)
        pad_x, pad_y = target_padding(*rgb.size) if self.config.resize == "targetpad" else (0, 0)
        padded = ImageOps.expand(rgb, (pad_x, pad_y, pad_x, pad_y), fill=0) if pad_x or pad_y else rgb
        pixels, (fx0, fy0, fx1, fy1) = shortest_side_centre(padded, side, resample)
        return pixels, (fx0 - pad_x, fy0 - pad_y, fx1 - pad_x, fy1 - pad_y)

    def _fit_region(self, rgb: Image.Image, source: Box) -> np.ndarray:
        """The garment box as the model's input, by the same rule as the whole picture."""
        if self.config.resize == "square":
            size = (self.config.image_size, self.config.image_size)
            return np.array(rgb.resize(size, RESAMPLE[self.config.resample], box=source), dtype=np.uint8)
        x0, y0, x1, y1 = (round(v) for v in source)
        return self._fit(rgb.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))))[0]


def target_padding(width: int, height: int) -> tuple[int, int]:
    """CLIP4Cir's "targetpad": black borders (per side, horizontal and vertical) that bring a picture whose
    long side exceeds TARGET_RATIO times its short side to that ratio; none for squarer pictures."""
    if max(width, height) / min(width, height) < TARGET_RATIO:
        return 0, 0
    long_side = max(width, height) / TARGET_RATIO
    return max(int((long_side - width) / 2), 0), max(int((long_side - height) / 2), 0)


def shortest_side_centre(image: Image.Image, side: int, resample: Image.Resampling) -> tuple[np.ndarray, Box]:
    """CLIP's rule, with torchvision's arithmetic (Resize(side) then CenterCrop(side)): the shortest side
    resized to `side`, the centre square kept; returns it and the region of `image` it shows."""
    w, h = image.size
    if w <= h:
        new_w, new_h = side, int(side * h / w)
    else:
        new_w, new_h = int(side * w / h), side
    left, top = int(round((new_w - side) / 2.0)), int(round((new_h - side) / 2.0))
    resized = image.resize((new_w, new_h), resample)
    pixels = np.array(resized.crop((left, top, left + side, top + side)), dtype=np.uint8)
    sx, sy = w / new_w, h / new_h
    return pixels, (left * sx, top * sy, (left + side) * sx, (top + side) * sy)


def to_frame(
    points: np.ndarray, mask: np.ndarray, frame: Box, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks given in [0, 1] of the whole picture, moved to [0, 1] of the region `frame` the model sees;
    points that fall outside it are no longer valid."""
    x0, y0, x1, y1 = frame
    xy = (points * np.array([width, height], np.float64) - [x0, y0]) / [x1 - x0, y1 - y0]
    inside = mask & np.all((xy >= 0.0) & (xy <= 1.0), axis=1)
    return np.where(inside[:, None], xy, 0.0).astype(np.float32), inside
