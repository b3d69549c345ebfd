"""Torch datasets over the preprocessing cache: uint8 CHW images (the model normalises), float landmarks
with a bool mask, and tokenised caption text; or, for a model's frozen parts, their cached vectors instead
(`image_features` for images, `text_features` for the caption: `fashionrec.data.features`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from fashionrec.data.cache import ImageCache
from fashionrec.data.fashioniq import Triplet, caption_text
from fashionrec.data.features import CachedFeatures
from fashionrec.data.landmarks_original import for_training
from fashionrec.data.preprocess import PreprocessedImage
from fashionrec.errors import UserError


class Tokenizer(Protocol):
    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """input_ids and attention_mask, padded to a fixed length."""
        ...


def caption_order_seed(seed: int, epoch: int, index: int) -> int:
    """The training caption order of one item: a hash, so a resumed run repeats it without RNG state."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def image_tensors(item: PreprocessedImage, prefix: str = "") -> dict[str, torch.Tensor]:
    """One cached image as the model's input tensors, keys prefixed (e.g. "ref_"). The transpose is numpy's:
    free for cached images (stored channels-first) and far faster than torch's uint8 permute otherwise."""
    return {
        f"{prefix}image": torch.from_numpy(np.ascontiguousarray(item.image.transpose(2, 0, 1))),
        f"{prefix}crop": torch.from_numpy(np.ascontiguousarray(item.crop.transpose(2, 0, 1))),
        f"{prefix}landmarks": torch.from_numpy(item.landmarks),
        f"{prefix}landmark_mask": torch.from_numpy(item.landmark_mask),
    }


def _require_cached(ids: Sequence[str], cache: ImageCache) -> None:
    absent = [i for i in dict.fromkeys(ids) if i not in cache]
    if absent:
        raise UserError(f"{len(absent)} images are not in the cache {cache.root} (first: {absent[0]}); build it first")


def image_inputs(image_id: str, cache: ImageCache, features: CachedFeatures | None, prefix: str = "") -> dict:
    """One image as the model takes it: its cached vector when the image encoder is frozen, else its pixels."""
    if features is not None and features.image is not None:
        return {f"{prefix}image_features": torch.from_numpy(features.image.get(image_id))}
    return image_tensors(cache.get(image_id), prefix)


class TripletDataset(Dataset):
    """Training and evaluation queries: reference image, caption text, target image.

    With `train`, the captions are shuffled by `caption_order_seed(seed, epoch, index)`; call `set_epoch`
    before each epoch (DataLoader workers see it when they are created, so not with persistent_workers).
    Under `--landmarks original` both images carry the reference's points, scaled as the original's
    training and validation data had them (`landmarks_original.for_training`).
    """

    def __init__(
        self,
        triplets: Sequence[Triplet],
        cache: ImageCache,
        tokenizer: Tokenizer,
        train: bool,
        seed: int = 0,
        features: CachedFeatures | None = None,
    ) -> None:
        self.triplets = list(triplets)
        _require_cached([i for t in self.triplets for i in (t.candidate, t.target)], cache)
        self.cache, self.tokenizer, self.train, self.seed = cache, tokenizer, train, seed
        self.features = features
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def text(self, index: int) -> str:
        """The caption text of item `index` in the current epoch."""
        order = caption_order_seed(self.seed, self.epoch, index) if self.train else None
        return caption_text(self.triplets[index].captions, order)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        triplet = self.triplets[index]
        return {
            **self._image_inputs(triplet),
            **self._text_inputs(self.text(index)),
            "index": torch.tensor(index, dtype=torch.long),
        }

    def _image_inputs(self, triplet: Triplet) -> dict[str, torch.Tensor]:
        if self.features is not None and self.features.image is not None:
            return {
                **image_inputs(triplet.candidate, self.cache, self.features, "ref_"),
                **image_inputs(triplet.target, self.cache, self.features, "tgt_"),
            }
        reference, target = for_training(
            self.cache.get(triplet.candidate), self.cache.get(triplet.target), self.cache.config.image_size
        )
        return {**image_tensors(reference, "ref_"), **image_tensors(target, "tgt_")}

    def _text_inputs(self, text: str) -> dict[str, torch.Tensor]:
        if self.features is not None and self.features.text is not None:
            return {"text_features": torch.from_numpy(self.features.text.get(text))}
        input_ids, attention_mask = self.tokenizer.encode(text)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(attention_mask, dtype=torch.long),
        }


class GalleryDataset(Dataset):
    """The images a query is ranked against (or a catalog to index), encoded once each, each with its own
    landmarks (under `--landmarks original`: detected on the whole image, as the original's catalog)."""

    def __init__(self, ids: Sequence[str], cache: ImageCache, features: CachedFeatures | None = None) -> None:
        self.ids = list(ids)
        _require_cached(self.ids, cache)
        self.cache, self.features = cache, features

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            **image_inputs(self.ids[index], self.cache, self.features),
            "index": torch.tensor(index, dtype=torch.long),
        }
