"""The real `Encoder`: a model (any family) plus the preprocessing and cache it was trained with."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fashionrec.data.cache import ImageCache
from fashionrec.data.landmarks_original import for_query
from fashionrec.data.preprocess import PreprocessConfig, PreprocessedImage, Preprocessor
from fashionrec.device import resolve_device
from fashionrec.model import FashionModel, load_model
from fashionrec.options import DEFAULT_DEVICE

Query = tuple[PreprocessedImage, list[int], list[int]]


def fingerprint(model: FashionModel, with_preprocess: bool = False) -> str:
    """sha256 of the architecture, the tokenizer and every weight: equal exactly when two models embed
    alike, however the checkpoint was saved (training checkpoint, exported directory, a copy). The
    preprocessing is left out (an index records its own, and queries use the index's); `with_preprocess`
    gives what indexes built by fashionrec 0.1 recorded, which hashed it with the rest of the config."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    architecture = config if with_preprocess else {k: v for k, v in config.items() if k != "preprocess"}
    digest.update(json.dumps(architecture, sort_keys=True).encode())
    digest.update(model.tokenizer.to_json().encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ModelEncoder:
    """A loaded model as an `Encoder`: catalog images through the training cache, queries through the same
    `Preprocessor` one at a time. Under `--landmarks original` a catalog image carries its own whole-image
    points and a query the points of its crop, as the original system's extractor and inference did
    (`fashionrec.data.landmarks_original`)."""

    def __init__(
        self,
        model: FashionModel,
        preprocess: PreprocessConfig,
        cache_dir: Path | None = None,
        device: str = DEFAULT_DEVICE,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.config = preprocess
        self.cache_dir = cache_dir
        self.fingerprint = fingerprint(model)
        self.dim = model.config.d_model
        self.preprocess = {"key": preprocess.key(), "config": preprocess.to_dict()}
        self._preprocessor: Preprocessor | None = None
        self._init_lock = threading.Lock()
        # YOLO and MediaPipe keep per-call state; the foreground crop is a pure function.
        stateful = preprocess.crop == "yolo" or preprocess.landmarks != "none"
        self._preprocess_lock: contextlib.AbstractContextManager = (
            threading.Lock() if stateful else contextlib.nullcontext()
        )

    @functools.cached_property
    def former_fingerprint(self) -> str:
        """The fingerprint fashionrec 0.1 recorded for this model (computed only when the current one does
        not match an index), so indexes built by it keep working."""
        return fingerprint(self.model, with_preprocess=True)

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        cache_dir: Path,
        device: str = DEFAULT_DEVICE,
        text_model: str | None = None,
        **overrides: Any,
    ) -> ModelEncoder:
        """For indexing: the checkpoint's own preprocessing unless `overrides` (crop=...) say otherwise."""
        model = load_model(checkpoint, text_model)
        return cls(model, model.config.preprocess_config(**overrides), cache_dir, device)

    @classmethod
    def for_catalog(
        cls,
        checkpoint: Path,
        preprocess: Mapping[str, Any],
        device: str = DEFAULT_DEVICE,
        text_model: str | None = None,
    ) -> ModelEncoder:
        """For querying: exactly the preprocessing the catalog was encoded with."""
        model = load_model(checkpoint, text_model)
        return cls(model, PreprocessConfig(**preprocess), device=device)

    def encode_catalog(self, paths: Mapping[str, Path], batch_size: int = 64) -> np.ndarray:
        if self.cache_dir is None:
            raise ValueError("encoding a catalog needs a cache_dir")
        if not paths:
            return np.empty((0, self.dim), np.float32)
        cache = ImageCache(self.cache_dir, self.config)
        cache.build(paths)
        ids = list(paths)
        out = np.empty((len(ids), self.dim), np.float32)
        with tqdm(total=len(ids), desc="encoding catalog", unit="img", file=sys.stderr) as bar:
            for start in range(0, len(ids), batch_size):
                batch = [cache.get(i) for i in ids[start : start + batch_size]]
                with torch.inference_mode():
                    vectors = self.model.encode_target(*_image_tensors(batch, self.device))
                out[start : start + len(batch)] = vectors.cpu().numpy()
                bar.update(len(batch))
        return out

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Preprocessed as queries are (no cache: an item added through the server comes as bytes)."""
        with self._preprocess_lock:
            processed = [self._get_preprocessor().process(image) for image in images]
        with torch.inference_mode():
            return self.model.encode_target(*_image_tensors(processed, self.device)).cpu().numpy()

    def prepare_query(self, image: Image.Image, text: str) -> Query:
        with self._preprocess_lock:
            processed = for_query(self._get_preprocessor().process(image))
        input_ids, attention_mask = self.model.tokenizer.encode(text)
        return processed, input_ids, attention_mask

    def encode_queries(self, prepared: Sequence[Query]) -> np.ndarray:
        images = _image_tensors([p for p, _, _ in prepared], self.device)
        input_ids = torch.tensor([ids for _, ids, _ in prepared], dtype=torch.long, device=self.device)
        attention_mask = torch.tensor([mask for _, _, mask in prepared], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return self.model.encode_reference(*images, input_ids, attention_mask).cpu().numpy()

    def _get_preprocessor(self) -> Preprocessor:
        """Built on first use: indexing needs only the cache's own, and YOLO or MediaPipe load slowly."""
        with self._init_lock:
            if self._preprocessor is None:
                self._preprocessor = Preprocessor(self.config)
            return self._preprocessor


def _image_tensors(items: Sequence[PreprocessedImage], device: torch.device) -> Iterator[torch.Tensor]:
    """image, crop (uint8 [B,3,S,S]: the model normalises), landmarks, landmark_mask, on `device`."""
    yield torch.from_numpy(np.stack([p.image for p in items])).permute(0, 3, 1, 2).to(device)
    yield torch.from_numpy(np.stack([p.crop for p in items])).permute(0, 3, 1, 2).to(device)
    yield torch.from_numpy(np.stack([p.landmarks for p in items])).to(device)
    yield torch.from_numpy(np.stack([p.landmark_mask for p in items])).to(device)
