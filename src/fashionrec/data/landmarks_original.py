"""The original public system's landmark detector (`--landmarks original`) and the three ways it fed the points
to its model, so that its checkpoints see what they were trained, indexed and queried with.

The detector: MediaPipe Pose on one picture (static images, detection confidence 0.5, model complexity 1, as
its `mp.solutions.pose.Pose(static_image_mode=True, min_detection_confidence=0.5)`); of the 33 points, those
inside the picture (0 <= x <= 1 and 0 <= y <= 1, whatever their visibility) in MediaPipe's order, the first
14 kept and the rest padded with (0, 0). x, y are in [0, 1] of the picture the detector was given.

Its conventions (S: the model's input size, 224 in the original):
1. training and validation: detected on the reference's crop (the whole reference when there is no crop)
   and multiplied by S / W and S / H of the whole reference; the one set goes to both the reference and the
   target block (`for_training`);
2. catalog extraction: each image's own points, detected on the whole image, as they are (`landmarks` of a
   processed image: what an image encoded alone uses);
3. queries: detected on the reference's crop (or the whole image), as they are (`for_query`).

Its crop is its YOLO detector's box, so points are detected on the crop under `--crop yolo` only; with any
other crop backend, or when YOLO finds nothing, the crop points are the whole image's, as the original's
code falls back to the whole image when YOLO finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fashionrec.data.landmarks import NUM_LANDMARKS, MediapipePose, no_landmarks

if TYPE_CHECKING:
    from fashionrec.data.preprocess import PreprocessedImage

ORIGINAL = "original"
# What a processed image holds besides the common fields under this backend (the cache stores them too).
EXTRA_FIELDS = ("crop_landmarks", "crop_landmark_mask", "source_size")


def first_points_in_frame(points: Sequence[tuple[float, ...]] | None) -> tuple[np.ndarray, np.ndarray]:
    """The original's rule: the first 14 of MediaPipe's points (x, y, ...) that lie inside the picture, then
    (0, 0); the mask says which rows are points."""
    coords, mask = no_landmarks()
    inside = [(p[0], p[1]) for p in points or () if 0 <= p[0] <= 1 and 0 <= p[1] <= 1][:NUM_LANDMARKS]
    if inside:
        coords[: len(inside)] = inside
        mask[: len(inside)] = True
    return coords, mask


class OriginalLandmarks:
    """The `original` backend: each picture's whole-image points and its crop points, with its size."""

    def __init__(self, on_crop: bool) -> None:
        self._pose = MediapipePose("--landmarks original, the original preset's default")
        self._on_crop = on_crop

    def _detect(self, picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        return first_points_in_frame(self._pose.points(np.asarray(picture)))

    def __call__(self, rgb: Image.Image, box: np.ndarray) -> dict[str, np.ndarray]:
        """The landmark fields of a processed image, for the RGB picture `rgb` and its crop `box` (x0, y0, x1, y1
        in [0, 1])."""
        w, h = rgb.size
        whole = self._detect(rgb)
        crop = whole
        # The original crops the picture at the detector's pixel box (PIL rounds it) and detects on that.
        x0, y0, x1, y1 = (round(float(v) * s) for v, s in zip(box, (w, h, w, h), strict=True))
        if self._on_crop and (x0, y0, x1, y1) != (0, 0, w, h) and x1 > x0 and y1 > y0:
            crop = self._detect(rgb.crop((x0, y0, x1, y1)))
        return {
            "landmarks": whole[0],
            "landmark_mask": whole[1],
            "crop_landmarks": crop[0],
            "crop_landmark_mask": crop[1],
            "source_size": np.array([w, h], np.int32),
        }


def for_training(
    reference: PreprocessedImage, target: PreprocessedImage, image_size: int
) -> tuple[PreprocessedImage, PreprocessedImage]:
    """Convention 1: the reference's crop points times S / W, S / H of the whole reference, for both images.
    Images of other landmark backends are returned as they are."""
    if reference.crop_landmarks is None or reference.source_size is None:
        return reference, target
    w, h = (int(v) for v in reference.source_size)
    points = (reference.crop_landmarks.astype(np.float64) * [image_size / w, image_size / h]).astype(np.float32)
    fields = {"landmarks": points, "landmark_mask": reference.crop_landmark_mask}
    return replace(reference, **fields), replace(target, **fields)


def for_query(reference: PreprocessedImage) -> PreprocessedImage:
    """Convention 3: the reference's crop points as they are. Images of other backends are returned as they are."""
    if reference.crop_landmarks is None:
        return reference
    return replace(reference, landmarks=reference.crop_landmarks, landmark_mask=reference.crop_landmark_mask)
