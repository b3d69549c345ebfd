"""Preprocessing: crop backends, landmark backends, output contract and the settings key."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionrec.data.crop import MARGIN, foreground_box
from fashionrec.data.landmarks import LANDMARK_NAMES, pose_to_landmarks
from fashionrec.data.preprocess import NUM_LANDMARKS, PreprocessConfig, Preprocessor
from fashionrec.errors import UserError


def garment_photo(width: int = 200, height: int = 160) -> Image.Image:
    """A red block at x 60..120, y 40..100 on an off-white background with slight noise."""
    rng = np.random.default_rng(0)
    pixels = np.full((height, width, 3), 240, np.int16) + rng.integers(-4, 5, (height, width, 3))
    pixels[40:100, 60:120] = (200, 30, 30)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def test_foreground_box_finds_the_garment_with_a_margin() -> None:
    box = foreground_box(garment_photo())
    expected = np.array([60 / 200 - MARGIN, 40 / 160 - MARGIN, 120 / 200 + MARGIN, 100 / 160 + MARGIN])
    np.testing.assert_allclose(box, expected, atol=0.01)
    assert box.dtype == np.float32


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (50, 40), (250, 250, 250)),  # nothing but background
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)),  # all noise
    ],
)
def test_foreground_box_falls_back_to_whole_image(image: Image.Image) -> None:
    np.testing.assert_array_equal(foreground_box(image), [0, 0, 1, 1])


def test_foreground_box_on_demo_garments(demo_data: Path) -> None:
    for path in sorted((demo_data / "images").glob("*.png"))[:30]:
        x0, y0, x1, y1 = foreground_box(Image.open(path))
        assert 0 < x0 < x1 < 1 and 0 < y0 < y1 < 1
        assert (x1 - x0) * (y1 - y0) < 0.7


def test_process_output_contract() -> None:
    out = Preprocessor(PreprocessConfig(image_size=64)).process(garment_photo())
    assert out.image.shape == out.crop.shape == (64, 64, 3)
    assert out.image.dtype == out.crop.dtype == np.uint8
    assert out.box.shape == (4,) and out.box.dtype == np.float32
    assert out.landmarks.shape == (NUM_LANDMARKS, 2) and out.landmarks.dtype == np.float32
    assert out.landmark_mask.shape == (NUM_LANDMARKS,) and out.landmark_mask.dtype == np.bool_
    assert not out.landmark_mask.any() and not out.landmarks.any()
    red = (out.crop[..., 0] > 150) & (out.crop[..., 1] < 80)
    assert 0.6 < red.mean() < 0.9  # the crop is mostly garment, with the margin around it
    assert (out.image[..., 1] > 200).mean() > 0.8  # the whole image is mostly background


def test_no_crop_keeps_whole_image() -> None:
    out = Preprocessor(PreprocessConfig(image_size=32, crop="none")).process(garment_photo())
    np.testing.assert_array_equal(out.box, [0, 0, 1, 1])
    np.testing.assert_array_equal(out.crop, out.image)


def test_process_accepts_grayscale_and_rgba() -> None:
    pre = Preprocessor(PreprocessConfig(image_size=16))
    for mode in ("L", "RGBA", "P"):
        assert pre.process(garment_photo().convert(mode)).image.shape == (16, 16, 3)


def test_key_is_stable_and_follows_every_setting(tmp_path: Path) -> None:
    base = PreprocessConfig()
    assert base.key() == PreprocessConfig(224, "foreground", "none").key()
    others = [
        PreprocessConfig(image_size=192),
        PreprocessConfig(crop="none"),
        PreprocessConfig(landmarks="mediapipe"),
    ]
    assert len({base.key(), *(c.key() for c in others)}) == 4
    assert PreprocessConfig(yolo_weights="unused.pt").key() == base.key()  # ignored unless --crop yolo
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"1")
    yolo = PreprocessConfig(crop="yolo", yolo_weights=str(weights))
    first = yolo.key()
    weights.write_bytes(b"22")  # new weights at the same path: a new cache
    assert yolo.key() != first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop": "sam"}, "unknown crop backend 'sam'"),
        ({"landmarks": "openpose"}, "unknown landmarks backend 'openpose'"),
        ({"image_size": 4}, "--image-size must be an integer of at least 8"),
        ({"crop": "yolo"}, "--crop yolo needs --yolo-weights FILE"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        PreprocessConfig(**kwargs)


def test_yolo_weights_file_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"YOLO weights file not found: {tmp_path / 'w.pt'}"):
        Preprocessor(PreprocessConfig(crop="yolo", yolo_weights=str(tmp_path / "w.pt")))


def test_yolo_without_ultralytics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "w.pt").write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes the import fail
    with pytest.raises(UserError, match="needs ultralytics"):
        Preprocessor(PreprocessConfig(crop="yolo", yolo_weights=str(tmp_path / "w.pt")))


def test_yolo_box_is_the_most_confident_detection_of_a_stand_in_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-written stand-in for `ultralytics.YOLO` (tests/data/test_yolo_crop.py runs the real one)."""
    (tmp_path / "w.pt").write_bytes(b"weights")
    loaded = []

    class FakeYOLO:
        def __init__(self, path: str) -> None:
            loaded.append(path)

        def predict(self, image: Image.Image, verbose: bool) -> list:
            xyxyn = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.2, 0.25, 0.7, 0.9]])
            boxes = types.SimpleNamespace(xyxyn=xyxyn, conf=torch.tensor([0.4, 0.8]))
            return [types.SimpleNamespace(boxes=boxes)]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=FakeYOLO))
    config = PreprocessConfig(image_size=32, crop="yolo", yolo_weights=str(tmp_path / "w.pt"))
    out = Preprocessor(config).process(garment_photo())
    assert loaded == [str(tmp_path / "w.pt")]
    np.testing.assert_allclose(out.box, [0.2, 0.25, 0.7, 0.9])


def test_pose_points_map_to_fourteen_with_mask() -> None:
    points = [(0.01 * i, 0.02 * i, 0.9) for i in range(33)]
    points[13] = (0.4, 0.5, 0.2)  # left elbow barely visible
    points[27] = (1.2, 0.5, 0.99)  # left ankle outside the picture
    coords, mask = pose_to_landmarks(points)
    names = dict(zip(LANDMARK_NAMES, range(NUM_LANDMARKS), strict=True))
    assert coords.shape == (14, 2) and mask.dtype == np.bool_
    np.testing.assert_allclose(coords[names["nose"]], [0, 0])
    assert mask[names["nose"]]
    np.testing.assert_allclose(coords[names["neck"]], [(0.11 + 0.12) / 2, (0.22 + 0.24) / 2], rtol=1e-6)
    np.testing.assert_allclose(coords[names["right_wrist"]], [0.16, 0.32], rtol=1e-6)
    assert not mask[names["left_elbow"]] and not mask[names["left_ankle"]]
    assert not coords[names["left_elbow"]].any() and not coords[names["left_ankle"]].any()
    assert mask.sum() == 12


def test_mediapipe_landmarks_on_a_person(require_mediapipe, require) -> None:
    data = require("skimage.data")
    out = Preprocessor(PreprocessConfig(image_size=64, crop="none", landmarks="mediapipe")).process(
        Image.fromarray(data.astronaut())
    )
    at = {name: (out.landmarks[i], out.landmark_mask[i]) for i, name in enumerate(LANDMARK_NAMES)}
    for name in ("nose", "neck", "left_shoulder", "right_shoulder"):
        assert at[name][1], name
    assert at["nose"][0][1] < at["neck"][0][1]  # the nose is above the neck
    assert at["right_shoulder"][0][0] < at["nose"][0][0] < at["left_shoulder"][0][0]  # facing the camera
    assert not at["left_ankle"][1]  # the picture ends at the chest
    assert ((out.landmarks >= 0) & (out.landmarks <= 1)).all()


def test_mediapipe_without_a_person_marks_nothing_valid(require_mediapipe) -> None:
    out = Preprocessor(PreprocessConfig(image_size=32, landmarks="mediapipe")).process(garment_photo())
    assert not out.landmark_mask.any() and not out.landmarks.any()


@pytest.mark.parametrize(
    ("python", "message"),
    [
        ((3, 12, 4), r"need mediapipe: pip install .fashionrec\[landmarks\]., or pass --landmarks none$"),
        (
            (3, 13, 1),
            r"need mediapipe 0.10.14, which has no wheel for Python 3.13: landmarks need Python 3.10 to 3.12;",
        ),
    ],
)
def test_mediapipe_missing(monkeypatch: pytest.MonkeyPatch, python: tuple[int, ...], message: str) -> None:
    """Not installed: how to install it, or, on a Python it has no wheel for, which Pythons have it."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    monkeypatch.setattr(sys, "version_info", python)
    with pytest.raises(UserError, match=message):
        Preprocessor(PreprocessConfig(landmarks="mediapipe"))


OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def clip_rule(size: int, resize: str) -> Preprocessor:
    return Preprocessor(
        PreprocessConfig(
            image_size=size, crop="none", resize=resize, resample="bicubic", mean=OPENAI_MEAN, std=OPENAI_STD
        )
    )


@pytest.mark.parametrize("shape", [(50, 71), (90, 40), (33, 33)])
def test_the_shortest_side_rule_is_open_clips_own_transform(shape: tuple[int, int]) -> None:
    """Resize(S) + CenterCrop(S) + ToTensor + Normalize, as open_clip preprocesses for CLIP, to the bit."""
    open_clip = pytest.importorskip("open_clip")
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8))
    theirs = open_clip.image_transform(32, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD, resize_mode="shortest")
    ours = torch.from_numpy(clip_rule(32, "shortest").process(picture).image).permute(2, 0, 1).float() / 255
    ours = (ours - torch.tensor(OPENAI_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_STD).view(3, 1, 1)
    torch.testing.assert_close(ours, theirs(picture), rtol=0, atol=0)


def test_targetpad_pads_elongated_pictures_to_a_ratio_of_1_25_and_leaves_squarer_ones_alone() -> None:
    wide = Image.new("RGB", (200, 100), (250, 250, 250))  # ratio 2: padded to 200 x 160, 30 black rows each side
    out = clip_rule(32, "targetpad").process(wide).image
    dark_rows = out.max(axis=(1, 2)) < 30  # 30 / 160 of 32 rows per side: 5 black, 1 blended by the filter
    assert dark_rows.sum() == 12 and dark_rows[:6].all() and dark_rows[-6:].all() and (out[:5] == 0).all()
    squarish = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, 120, 3), dtype=np.uint8))  # 1.2
    np.testing.assert_array_equal(
        clip_rule(32, "targetpad").process(squarish).image, clip_rule(32, "shortest").process(squarish).image
    )


def test_landmarks_follow_the_resize_rule_into_the_models_frame(require) -> None:
    """The shortest-side rule shows the centre of a 400 x 512 picture: resized to 64 x 81 (81.92 truncated, as
    torchvision does), rows 8 to 72 kept, i.e. rows 8 and 72 of 81 of the original height. Points move into
    that frame, and points outside it are no longer valid."""
    require("mediapipe")
    data = require("skimage.data")
    picture = Image.fromarray(data.astronaut()[:, :400])
    whole = Preprocessor(PreprocessConfig(image_size=64, crop="none", landmarks="mediapipe")).process(picture)
    centre = Preprocessor(PreprocessConfig(image_size=64, crop="none", landmarks="mediapipe", resize="shortest"))
    moved = centre.process(picture)
    top, bottom = 8 / 81, 72 / 81
    expected = np.stack([whole.landmarks[:, 0], (whole.landmarks[:, 1] - top) / (bottom - top)], axis=1)
    inside = whole.landmark_mask & (expected[:, 1] >= 0) & (expected[:, 1] <= 1)
    np.testing.assert_array_equal(moved.landmark_mask, inside)
    np.testing.assert_allclose(moved.landmarks[inside], expected[inside], atol=1e-5)


def test_the_key_follows_the_resize_rule_the_filter_and_the_pixel_statistics() -> None:
    base = PreprocessConfig()
    others = [
        PreprocessConfig(resize="shortest"),
        PreprocessConfig(resize="targetpad"),
        PreprocessConfig(resample="bicubic"),
        PreprocessConfig(mean=OPENAI_MEAN),
        PreprocessConfig(std=OPENAI_STD),
    ]
    assert len({base.key(), *(c.key() for c in others)}) == 6
    assert PreprocessConfig(mean=list(OPENAI_MEAN)).key() == PreprocessConfig(mean=OPENAI_MEAN).key()  # JSON lists
    with pytest.raises(UserError, match="unknown resize rule 'crop'"):
        PreprocessConfig(resize="crop")
