"""Body landmarks: a fixed number of points with a validity mask, so that padding never reads as a point.

Coordinates are (x, y) in [0, 1] of the whole image, which is also the frame of the model's whole-image
input (that input is the picture resized, not cropped). Invalid points are (0, 0) with mask False.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from fashionrec.errors import UserError

# The pinned mediapipe 0.10.14 (whose wheel ships the pose model, so it works offline) has no wheel for Python
# 3.13 or later: there the `landmarks` extra installs without it (pyproject.toml's marker says the same).
MEDIAPIPE_NEWEST_PYTHON = (3, 12)


def mediapipe_installable() -> bool:
    return tuple(sys.version_info[:2]) <= MEDIAPIPE_NEWEST_PYTHON


LANDMARK_NAMES = (
    "nose", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_LANDMARKS = len(LANDMARK_NAMES)

# Indices into the 33 points of MediaPipe Pose; "neck" is the midpoint of the shoulders.
POSE_INDEX = {
    "nose": 0, "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
    "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24, "left_knee": 25,
    "right_knee": 26, "left_ankle": 27, "right_ankle": 28,
}  # fmt: skip
VISIBILITY_THRESHOLD = 0.5


def no_landmarks() -> tuple[np.ndarray, np.ndarray]:
    """The `none` backend, and the answer when no body is found: no valid point."""
    return np.zeros((NUM_LANDMARKS, 2), np.float32), np.zeros(NUM_LANDMARKS, np.bool_)


def pose_to_landmarks(points: Sequence[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Our 14 points from MediaPipe's 33 (x, y, visibility); a point is valid when visible and inside."""
    raw = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    rows = []
    for name in LANDMARK_NAMES:
        if name == "neck":
            left, right = raw[POSE_INDEX["left_shoulder"]], raw[POSE_INDEX["right_shoulder"]]
            rows.append([(left[0] + right[0]) / 2, (left[1] + right[1]) / 2, min(left[2], right[2])])
        else:
            rows.append(raw[POSE_INDEX[name]])
    table = np.asarray(rows)
    xy, visibility = table[:, :2], table[:, 2]
    mask = (visibility >= VISIBILITY_THRESHOLD) & np.all((xy >= 0.0) & (xy <= 1.0), axis=1)
    coords = np.where(mask[:, None], xy, 0.0).astype(np.float32)
    return coords, mask.astype(np.bool_)


class MediapipePose:
    """The `mediapipe` backend: the legacy Pose solution, whose model ships in the 0.10.14 wheel (offline)."""

    def __init__(self, backend: str = "--landmarks mediapipe, the paper preset's default") -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # keep TFLite's start-up chatter off stderr
        try:
            from mediapipe.python.solutions import pose
        except ImportError:
            raise UserError(_mediapipe_missing(backend)) from None
        self._pose = pose.Pose(static_image_mode=True, model_complexity=1)

    def points(self, rgb: np.ndarray) -> list[tuple[float, float, float]] | None:
        """MediaPipe's 33 points (x, y in [0, 1] of `rgb`, visibility), or None when it finds no body."""
        with warnings.catch_warnings():  # mediapipe 0.10.14 calls a protobuf API newer protobufs deprecate
            warnings.filterwarnings("ignore", "SymbolDatabase.GetPrototype", UserWarning)
            result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        return [(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark]

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = self.points(rgb)
        return no_landmarks() if points is None else pose_to_landmarks(points)


def _mediapipe_missing(backend: str) -> str:
    needed = f"landmarks ({backend}) need mediapipe"
    if not mediapipe_installable():
        python, newest = "{}.{}".format(*sys.version_info[:2]), "{}.{}".format(*MEDIAPIPE_NEWEST_PYTHON)
        return (
            f"{needed} 0.10.14, which has no wheel for Python {python}: landmarks need Python 3.10 to {newest}; "
            "or pass --landmarks none"
        )
    return f"{needed}: pip install 'fashionrec[landmarks]', or pass --landmarks none"
