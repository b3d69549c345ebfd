"""The outputs of a model's frozen parts, computed once per input and cached on disk
(`fashionrec.data.features`), so an epoch costs only what trains: a frozen CLIP image encoder's features
of every image the run uses, a frozen text encoder's features of every caption text the run can produce.
The caches are named by the part's weights and what feeds it (`model.feature_key`): a later run, a resumed
one, or another run on the same data and encoder reads them back without running the part."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import caption_order_seed
from fashionrec.data.fashioniq import Triplet, caption_parts, caption_text
from fashionrec.data.features import CachedFeatures, FeatureCache, image_content_key, text_content_key
from fashionrec.model.factory import FashionModel

MAX_PERMUTED = 5  # up to this many captions, every order is cached; beyond, the orders this run's epochs use


def cacheable_parts(model: FashionModel, frozen: set[str]) -> dict[str, str]:
    """Frozen part -> the input its cached outputs stand for ("image", "text"), for models that read them."""
    inputs: Mapping[str, str] = getattr(model, "CACHED_INPUTS", {})
    return {part: inputs[part] for part in sorted(frozen) if part in inputs}


def run_texts(triplets: list[Triplet], seed: int, epochs: int) -> list[str]:
    """Every caption text training (each epoch's caption order) and validation (file order) can give."""
    texts: dict[str, None] = {}
    for index, triplet in enumerate(triplets):
        parts = caption_parts(triplet.captions)
        if len(parts) <= MAX_PERMUTED:
            texts.update(dict.fromkeys(" and ".join(order) for order in itertools.permutations(parts)))
        else:
            orders = [caption_order_seed(seed, epoch, index) for epoch in range(epochs)]
            texts.update(dict.fromkeys(caption_text(triplet.captions, order) for order in [None, *orders]))
    return list(texts)


def build_features(
    model: FashionModel,
    frozen: set[str],
    cache_dir: str | Path,
    images: Mapping[str, Path],
    image_cache: ImageCache,
    texts: list[str],
    device: torch.device,
    batch: int,
    log: Callable[[str], None],
    keys: Mapping[str, str] | None = None,
) -> tuple[CachedFeatures | None, dict[str, str]]:
    """Cache the outputs of the model's frozen parts for `images` (id -> file) and `texts`. `keys` names the
    caches (the part -> key map another process computed; default: this model's). Returns the features and
    the keys."""
    parts = cacheable_parts(model, frozen)
    if not parts:
        return None, {}
    keys = dict(keys) if keys is not None else {part: model.feature_key(part) for part in parts}
    features = CachedFeatures()
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for part, kind in parts.items():
                cache = FeatureCache(cache_dir, kind, keys[part])
                if kind == "image":
                    items = {i: image_content_key(i, p) for i, p in images.items()}
                    computed = cache.build(
                        items, {i: i for i in images}, _image_features(model, image_cache, device), batch
                    )
                    features.image = cache
                else:
                    items = {t: text_content_key(t) for t in texts}
                    computed = cache.build(items, {t: t for t in texts}, _text_features(model, device), batch)
                    features.text = cache
                reused = len(items) - computed
                log(f"{kind} features of the frozen {part}: {computed} computed, {reused} read from {cache.root}")
    finally:
        model.train(was_training)
    return features, keys


def _image_features(model: FashionModel, image_cache: ImageCache, device: torch.device):
    def compute(ids: list[str]) -> np.ndarray:
        pixels = np.stack([image_cache.get(i).image for i in ids]).transpose(0, 3, 1, 2)
        return model.image_features(torch.from_numpy(np.ascontiguousarray(pixels)).to(device)).cpu().numpy()

    return compute


def _text_features(model: FashionModel, device: torch.device):
    def compute(texts: list[str]) -> np.ndarray:
        input_ids, _ = model.tokenizer.encode_batch(texts)
        return model.text_features(input_ids.to(device)).cpu().numpy()

    return compute
