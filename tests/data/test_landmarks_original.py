"""`--landmarks original` against an independent transcription of the original system's detector and of the
three places it used it (its dataset, its catalog extractor, its query side), on a real photo and a crop of
it: the same 14 points in the same order, within 1e-4.

The crop box comes from a stand-in in the `ultralytics` slot: their YOLO weights are no longer published
(users bring their own, and tests/data/test_yolo_crop.py runs the real class with random weights, whose boxes
mean nothing). It boxes the astronaut's torso below the eyes on the 512 px photo and finds nothing on any other
picture, so both the crop and the whole-image fallback are exercised."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import GalleryDataset, TripletDataset
from fashionrec.data.fashioniq import Triplet
from fashionrec.data.landmarks_original import first_points_in_frame
from fashionrec.data.preprocess import PreprocessConfig
from fashionrec.index.model_encoder import ModelEncoder
from fashionrec.model import create_model

SIZE = 224  # their model's input size: the scale of their training points is 224 / W, 224 / H
TORSO = (60, 120, 430, 512)  # pixels of the 512 px photo: the eyes (y ~105) and everything above are outside
PORTRAIT = (100, 20, 420, 480)  # a second picture cut from the photo, 320 x 460 (W differs from H)


class TorsoDetector:
    """Stands in for `ultralytics.YOLO`: one box on the 512 px photo, nothing elsewhere."""

    def __init__(self, weights: str) -> None:
        self.weights = weights

    def predict(self, image: Image.Image, verbose: bool) -> list:
        w, h = image.size
        found = [[TORSO[0] / w, TORSO[1] / h, TORSO[2] / w, TORSO[3] / h]] if (w, h) == (512, 512) else []
        boxes = types.SimpleNamespace(xyxyn=torch.tensor(found).reshape(-1, 4), conf=torch.ones(len(found)))
        return [types.SimpleNamespace(boxes=boxes)]


# ---- their code, transcribed: the detector and the three conventions ------------------------------------
def their_detect(picture: Image.Image) -> list[list[float]]:
    """A fresh Pose per call (static images, detection confidence 0.5); the points inside the picture, in
    MediaPipe's order, the first 14 kept; (0, 0) for the rest."""
    import mediapipe as mp

    with mp.solutions.pose.Pose(static_image_mode=True, min_detection_confidence=0.5) as pose:
        found = pose.process(np.array(picture.convert("RGB"))).pose_landmarks
    inside = [] if found is None else [[p.x, p.y] for p in found.landmark if 0 <= p.x <= 1 and 0 <= p.y <= 1]
    return (inside + [[0, 0]] * 14)[:14]


def their_crop(picture: Image.Image) -> Image.Image | None:
    """Their clothes detector: the picture cut at the most confident box, or None when there is none."""
    return picture.crop(TORSO) if picture.size == (512, 512) else None


def their_training_points(reference: Image.Image) -> torch.Tensor:
    """Their dataset: detected on the reference's crop (else the whole reference), times 224 / W, 224 / H."""
    crop = their_crop(reference)
    points = their_detect(crop if crop is not None else reference)
    w, h = reference.size
    return torch.tensor([[x * (SIZE / w), y * (SIZE / h)] for x, y in points], dtype=torch.float32)


def their_catalog_points(picture: Image.Image) -> torch.Tensor:
    """Their catalog extractor: the image's own points, on the whole image."""
    return torch.tensor(their_detect(picture), dtype=torch.float32)


def their_query_points(picture: Image.Image) -> torch.Tensor:
    """Their inference: detected on the crop (else the whole image), as they are."""
    crop = their_crop(picture)
    return torch.tensor(their_detect(crop if crop is not None else picture), dtype=torch.float32)


# ---- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(require, require_mediapipe, tmp_path_factory) -> dict[str, Path]:
    astronaut = Image.fromarray(require("skimage.data").astronaut())
    folder = tmp_path_factory.mktemp("photos")
    paths = {"astronaut": folder / "astronaut.png", "portrait": folder / "portrait.png"}
    astronaut.save(paths["astronaut"])
    astronaut.crop(PORTRAIT).save(paths["portrait"])
    return paths


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    weights = tmp_path_factory.mktemp("yolo") / "their_detector.pt"
    weights.write_bytes(b"the user's own weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=TorsoDetector))
        yield PreprocessConfig(image_size=SIZE, crop="yolo", landmarks="original", yolo_weights=str(weights))


@pytest.fixture(scope="module")
def cache(photos, config, tmp_path_factory) -> ImageCache:
    cache = ImageCache(tmp_path_factory.mktemp("cache"), config)
    cache.build(photos, progress=False, workers=1)
    return cache


def pictures(photos: dict[str, Path]) -> dict[str, Image.Image]:
    return {name: Image.open(path).convert("RGB") for name, path in photos.items()}


class Words:
    def encode(self, text: str) -> tuple[list[int], list[int]]:
        return [len(text)] * 4, [1] * 4


# ---- tests ----------------------------------------------------------------------------------------------
def test_their_rule_keeps_the_first_fourteen_points_inside_the_picture():
    points = [(0.01 * i, 0.02 * i, 0.0) for i in range(33)]  # visibility 0 everywhere: no visibility filter
    points[0], points[3], points[5] = (1.2, 0.5, 1.0), (0.5, -0.01, 1.0), (1.0, 0.0, 1.0)  # out, out, on the edge
    coords, mask = first_points_in_frame(points)
    kept = [i for i in range(33) if i not in (0, 3)][:14]
    np.testing.assert_array_equal(coords, np.array([points[i][:2] for i in kept], np.float32))
    assert mask.all()
    coords, mask = first_points_in_frame(points[:6])  # fewer than 14 inside: (0, 0), marked absent
    assert mask.tolist() == [True] * 4 + [False] * 10 and not coords[4:].any()
    assert not first_points_in_frame(None)[1].any()  # no body found


@pytest.mark.slow  # about 20 MediaPipe runs
@pytest.mark.filterwarnings("ignore:SymbolDatabase.GetPrototype")  # mediapipe 0.10.14 on newer protobufs
def test_training_catalog_and_query_points_are_theirs(photos, config, cache):
    photo = pictures(photos)
    triplets = [
        Triplet("astronaut", "portrait", ("is darker",), "all"),
        Triplet("portrait", "astronaut", ("x",), "all"),
    ]
    batch = next(iter(DataLoader(TripletDataset(triplets, cache, Words(), train=True), batch_size=2)))
    for row, name in enumerate(("astronaut", "portrait")):
        expected = their_training_points(photo[name])
        torch.testing.assert_close(batch["ref_landmarks"][row], expected, atol=1e-4, rtol=0)
    assert torch.equal(batch["tgt_landmarks"], batch["ref_landmarks"])  # the reference's points, for both blocks
    assert torch.equal(batch["tgt_landmark_mask"], batch["ref_landmark_mask"])

    gallery = GalleryDataset(["astronaut", "portrait"], cache)
    for row, name in enumerate(("astronaut", "portrait")):
        torch.testing.assert_close(gallery[row]["landmarks"], their_catalog_points(photo[name]), atol=1e-4, rtol=0)

    model = create_model("tiny", ["is darker"], pretrained=False).eval()
    encoder = ModelEncoder(model, PreprocessConfig(**{**config.to_dict(), "image_size": 64}), cache.root.parent, "cpu")
    for name in ("astronaut", "portrait"):
        processed, _, _ = encoder.prepare_query(photo[name], "is darker")
        torch.testing.assert_close(
            torch.from_numpy(processed.landmarks), their_query_points(photo[name]), atol=1e-4, rtol=0
        )

    # The catalog is encoded with its whole-image points, not the query's crop points.
    vectors = encoder.encode_catalog({"astronaut": photos["astronaut"]})
    item = ImageCache(cache.root.parent, encoder.config)
    item.build({"astronaut": photos["astronaut"]}, progress=False)
    cached = item.get("astronaut")
    pixels = [torch.from_numpy(a).permute(2, 0, 1)[None] for a in (cached.image, cached.crop)]
    with torch.no_grad():
        for points, same in (
            (their_catalog_points(photo["astronaut"]), True),
            (their_query_points(photo["astronaut"]), False),
        ):
            expected = model.encode_target(*pixels, points[None], torch.from_numpy(cached.landmark_mask)[None])
            assert np.allclose(vectors, expected.numpy(), atol=1e-5) == same

    # What makes the comparison telling: the three conventions differ on the photo, and its crop leaves out
    # some of MediaPipe's first 14 points (the eyes and ears), so "the first 14 inside" is not "the first 14".
    whole, crop = their_catalog_points(photo["astronaut"]), their_query_points(photo["astronaut"])
    assert not torch.allclose(whole, crop) and not torch.allclose(crop, their_training_points(photo["astronaut"]))
    import mediapipe as mp

    with mp.solutions.pose.Pose(static_image_mode=True) as pose:
        found = pose.process(np.array(their_crop(photo["astronaut"]))).pose_landmarks.landmark
    assert sum(not 0 <= p.y <= 1 for p in found[:14]) >= 4
