"""The original system's validation (`--validation original`): its number, comparable with the `val_recalls`
its `train_optimized.py`, `resume_training.py` and later `train.py` saved.

Every validation triplet in file order (categories one after the other), in batches of the run's `--batch`;
with `--fast-validation` only the first 30 batches, as theirs. Each batch goes through the model's training
forward in eval mode (for the `original` preset the target block sees the reference's landmarks, as theirs
did); all embeddings are L2-normalised, and each query's target is ranked among the targets of all the
validated triplets, one per query, duplicates included. Not the FashionIQ protocol (a gallery of unique
images, per category): the two numbers do not compare, which is why checkpoints record the protocol of
each `val_recalls` entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import TripletDataset
from fashionrec.data.fashioniq import CategorySplit, Triplet
from fashionrec.data.features import CachedFeatures
from fashionrec.eval.metrics import diagonal_topk_recall
from fashionrec.eval.retrieval import KS, EvalSettings, autocast, gather_shards, loader, shard, to_device
from fashionrec.model.factory import FashionModel
from fashionrec.model.original_format import ORIGINAL_PROTOCOL

FAST_BATCHES = 30  # their `max_val_batches` with --fast-validation


def validated_triplets(splits: dict[str, CategorySplit], batch_size: int, max_batches: int | None) -> list[Triplet]:
    triplets = [t for split in splits.values() for t in split.triplets]
    return triplets if max_batches is None else triplets[: max_batches * batch_size]


@torch.no_grad()
def embed_triplets(
    model: FashionModel,
    triplets: Sequence[Triplet],
    cache: ImageCache,
    settings: EvalSettings,
    features: CachedFeatures | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f_ref, f_tar) of each triplet, from the model's training forward (each rank embeds its shard; `features`:
    the frozen parts' cached outputs, for models that read them)."""
    refs, tars = [], []
    mine = shard(triplets, settings)
    dataset = TripletDataset(mine, cache, model.tokenizer, train=False, seed=settings.seed, features=features)
    for batch in loader(dataset, settings):
        with autocast(settings):
            f_ref, f_tar = model(to_device(batch, settings.device))
        refs.append(f_ref.float().cpu())
        tars.append(f_tar.float().cpu())
    empty = torch.empty(0, model.config.d_model)
    return tuple(gather_shards(torch.cat(x) if x else empty, len(triplets), settings) for x in (refs, tars))


def evaluate_original(
    model: FashionModel,
    splits: dict[str, CategorySplit],
    cache: ImageCache,
    settings: EvalSettings,
    max_batches: int | None = None,
    features: CachedFeatures | None = None,
) -> dict[str, Any]:
    """Recall@10 and @50 (fractions) under the original system's protocol; `max_batches`: FAST_BATCHES for
    their fast validation, None for every triplet."""
    triplets = validated_triplets(splits, settings.batch_size, max_batches)
    was_training = model.training
    model.eval()
    try:
        f_ref, f_tar = embed_triplets(model, triplets, cache, settings, features)
    finally:
        model.train(was_training)
    similarity = F.normalize(f_ref, p=2, dim=1) @ F.normalize(f_tar, p=2, dim=1).t()
    average = {f"recall_at_{k}": diagonal_topk_recall(similarity, k) for k in KS}
    return {"protocol": ORIGINAL_PROTOCOL, "average": average, "queries": len(triplets)}
