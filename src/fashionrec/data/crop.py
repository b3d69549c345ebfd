"""Where the garment is: a box (x0, y0, x1, y1) in [0, 1] of the image, from one of the crop backends."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from fashionrec.data.preprocess_config import CROPS
from fashionrec.errors import UserError

Boxer = Callable[[Image.Image], np.ndarray]

WHOLE_IMAGE = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
ANALYSIS_SIDE = 160  # the box is relative: a small copy locates it well enough, and fast
MIN_TOLERANCE = 24  # per-channel difference (0-255) below which a pixel counts as background
MARGIN = 0.04  # fraction of the image added around the found box, so edges are not clipped
MIN_AREA = 0.01  # a smaller box is noise (a speck of dust), not a garment


def whole_image(image: Image.Image) -> np.ndarray:
    """The `none` backend: the whole picture."""
    return WHOLE_IMAGE.copy()


def foreground_box(image: Image.Image) -> np.ndarray:
    """The `foreground` backend: catalog photos stand on a plain background, so the garment is whatever
    differs from the colour of the border; the whole image when nothing clearly does."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb.reduce(math.ceil(max(rgb.size) / ANALYSIS_SIDE))  # an integer box filter: fast, smooths noise
    pixels = np.asarray(small, dtype=np.int16)
    h, w = pixels.shape[:2]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0).round().astype(np.int16)
    border_noise = _channel_max(np.abs(border - background))
    tolerance = max(MIN_TOLERANCE, float(np.percentile(border_noise, 90)) + 8)
    foreground = _channel_max(np.abs(pixels - background)) > tolerance
    min_count = max(1, round(0.02 * min(h, w)))  # a row or column needs a few such pixels, not one
    rows = np.flatnonzero(foreground.sum(axis=1) >= min_count)
    cols = np.flatnonzero(foreground.sum(axis=0) >= min_count)
    if rows.size == 0 or cols.size == 0:
        return WHOLE_IMAGE.copy()
    box = np.array([cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h])
    if (box[2] - box[0]) * (box[3] - box[1]) < MIN_AREA:
        return WHOLE_IMAGE.copy()
    box += [-MARGIN, -MARGIN, MARGIN, MARGIN]
    return np.clip(box, 0.0, 1.0).astype(np.float32)


def _channel_max(values: np.ndarray) -> np.ndarray:
    """Largest of the last axis's three channels; several times faster than `.max(axis=-1)` on size 3."""
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])


def import_ultralytics() -> ModuleType:
    """ultralytics, without its global patch of `PIL.Image.open`: on import it replaces Pillow's `open` with
    one that, on the first file Pillow cannot identify, tries to pip-install a HEIF plugin. A server with
    `--crop yolo` would then answer a bad upload with a network install (or a 500) instead of a 400."""
    pil_open = Image.open
    try:
        import ultralytics
    except ImportError:
        raise UserError("--crop yolo needs ultralytics: pip install 'fashionrec[yolo]'") from None
    finally:
        Image.open = pil_open
    return ultralytics


class YoloBoxer:
    """The `yolo` backend: the most confident box of a user-supplied ultralytics detector."""

    def __init__(self, weights: str | Path) -> None:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"YOLO weights file not found: {path}")
        ultralytics = import_ultralytics()
        try:
            self._model = ultralytics.YOLO(str(path))
        except Exception as e:  # ultralytics raises many kinds for a bad file; the user needs the path
            raise UserError(f"cannot load YOLO weights {path}: {e}") from None

    def __call__(self, image: Image.Image) -> np.ndarray:
        result = self._model.predict(image, verbose=False)[0]
        boxes = np.asarray(result.boxes.xyxyn.tolist(), dtype=np.float32).reshape(-1, 4)
        if boxes.shape[0] == 0:
            return WHOLE_IMAGE.copy()
        confidence = np.asarray(result.boxes.conf.tolist(), dtype=np.float32)
        return np.clip(boxes[int(confidence.argmax())], 0.0, 1.0)


def make_boxer(crop: str, yolo_weights: str | None) -> Boxer:
    """The box function of a crop backend name (see `PreprocessConfig.crop`)."""
    if crop == "none":
        return whole_image
    if crop == "foreground":
        return foreground_box
    if crop == "yolo":
        if yolo_weights is None:
            raise UserError("--crop yolo needs --yolo-weights FILE")
        return YoloBoxer(yolo_weights)
    raise UserError(f"unknown crop backend {crop!r} (choose from {', '.join(CROPS)})")
