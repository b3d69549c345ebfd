"""The `yolo` crop backend against a real `ultralytics.YOLO`: a YOLOv8n detector built from the model
definition ultralytics ships (random weights, nothing downloaded), saved as a weights file and loaded
back by the adapter. The detections mean nothing; the contract is what is checked: boxes in the
format ultralytics returns, the most confident one chosen, and the whole image when there is none."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from fashionrec.data.crop import WHOLE_IMAGE, YoloBoxer, import_ultralytics
from fashionrec.data.preprocess import PreprocessConfig, Preprocessor


@pytest.fixture(scope="module")
def ultralytics(require: Callable[[str], ModuleType], tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    settings = tmp_path_factory.mktemp("ultralytics")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_CONFIG_DIR", str(settings))  # its settings file goes here, not in $HOME
        patch.setenv("YOLO_OFFLINE", "1")
        if importlib.util.find_spec("ultralytics") is None:
            require("ultralytics")  # skips here, fails in CI
        return import_ultralytics()  # not `import ultralytics`: that would leave PIL patched (see crop.py)


def detector(ultralytics: ModuleType, out: Path, class_bias: float) -> Path:
    """A random-init YOLOv8n saved to `out`. Its batch norms are first fitted to one batch of noise
    (random init leaves the features near zero, so every anchor would score alike); its class logits
    are then scaled down and shifted by `class_bias`: 0 gives hundreds of distinct confidences, a large
    negative bias no detection at all."""
    torch.manual_seed(0)
    model = ultralytics.YOLO("yolov8n.yaml")
    net = model.model
    for layer in net.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # running statistics = this batch's
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 128, 128))
    net.eval()
    for branch in net.model[-1].cv3:
        branch[-1].weight.data.mul_(0.01)
        branch[-1].bias.data.fill_(class_bias)
    model.save(out)
    return out


def picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))


@pytest.mark.slow
def test_the_most_confident_box_of_a_real_detector(ultralytics: ModuleType, tmp_path: Path) -> None:
    weights = detector(ultralytics, tmp_path / "confident.pt", class_bias=0.0)
    image = picture()
    result = ultralytics.YOLO(str(weights)).predict(image, verbose=False)[0]
    boxes, confidence = result.boxes.xyxyn.numpy(), result.boxes.conf.numpy()
    assert boxes.shape[0] >= 2 and boxes.shape[1] == 4 and len(set(confidence.tolist())) > 1
    box = YoloBoxer(weights)(image)
    assert box.dtype == np.float32 and box.shape == (4,)
    np.testing.assert_allclose(box, np.clip(boxes[confidence.argmax()], 0, 1), atol=1e-6)
    assert (0 <= box).all() and (box <= 1).all() and box[0] < box[2] and box[1] < box[3]
    # Through the preprocessing: the crop is that box of the picture.
    out = Preprocessor(PreprocessConfig(image_size=32, crop="yolo", yolo_weights=str(weights))).process(image)
    np.testing.assert_allclose(out.box, box, atol=1e-6)


def test_no_detection_means_the_whole_image(ultralytics: ModuleType, tmp_path: Path) -> None:
    weights = detector(ultralytics, tmp_path / "silent.pt", class_bias=-50.0)
    image = picture()
    assert len(ultralytics.YOLO(str(weights)).predict(image, verbose=False)[0].boxes) == 0
    np.testing.assert_array_equal(YoloBoxer(weights)(image), WHOLE_IMAGE)


def test_a_file_that_is_not_yolo_weights_is_a_user_error(ultralytics: ModuleType, tmp_path: Path) -> None:
    from fashionrec.errors import UserError

    (tmp_path / "w.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=f"cannot load YOLO weights {tmp_path / 'w.pt'}"):
        YoloBoxer(tmp_path / "w.pt")


def test_loading_a_detector_leaves_pillow_as_it_was(ultralytics: ModuleType, tmp_path: Path) -> None:
    """ultralytics patches `Image.open` globally on import; decoding a bad upload must still be a plain 400."""
    from fashionrec.errors import UserError
    from fashionrec.index.images import DEFAULT_LIMITS, decode_image

    pil_open = Image.open
    YoloBoxer(detector(ultralytics, tmp_path / "d.pt", class_bias=0.0))
    assert Image.open is pil_open
    with pytest.raises(UserError, match="not a JPEG, PNG or WebP"):
        decode_image(b"hello, this is text", DEFAULT_LIMITS)
