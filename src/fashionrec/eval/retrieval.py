"""The FashionIQ retrieval protocol: per category, every gallery image is encoded once by the target block,
every query once by the reference block; cosine similarity ranks the whole gallery for each query.

The standard FashionIQ validation protocol (the field's reference code, CLIP4Cir's `compute_fiq_val_metrics`)
ranks the split's whole image list, the query's own reference image included; `exclude_reference` gives the
variant that removes it. A query whose target is not in the gallery is a miss, counted and reported."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import GalleryDataset, TripletDataset
from fashionrec.data.fashioniq import CategorySplit, Triplet
from fashionrec.data.features import CachedFeatures
from fashionrec.errors import UserError
from fashionrec.eval.metrics import recall_at_k, target_ranks
from fashionrec.model.factory import FashionModel

KS = (10, 50)
STANDARD = "fashioniq-standard"
EXCLUDE_REFERENCE = "fashioniq-exclude-reference"


@dataclass
class EvalSettings:
    device: torch.device
    batch_size: int = 64
    num_workers: int = 0
    amp_dtype: torch.dtype | None = None
    query_limit: int | None = None  # fast validation: a fixed, seeded subset of queries per category
    seed: int = 0
    exclude_reference: bool = False  # True: drop each query's reference image from its ranking (not the standard)
    # Under DDP each rank encodes 1/world_size of the gallery and queries; all ranks get every embedding.
    rank: int = 0
    world_size: int = 1


def loader(dataset: Dataset, settings: EvalSettings) -> DataLoader:
    """In-order loader with its own generator, so evaluating never draws from the global RNG."""
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=settings.num_workers,
        generator=torch.Generator().manual_seed(settings.seed),
    )


def autocast(settings: EvalSettings):
    if settings.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(settings.device.type, dtype=settings.amp_dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def shard(items: Sequence, settings: EvalSettings) -> list:
    """This rank's contiguous slice of `items` (all of them in a single process)."""
    per = math.ceil(len(items) / settings.world_size)
    return list(items[settings.rank * per : (settings.rank + 1) * per])


def gather_shards(local: torch.Tensor, total: int, settings: EvalSettings) -> torch.Tensor:
    """Undo `shard`: every rank's rows in item order. Shards are padded to one size for all_gather; only
    the last non-empty shard can be short, so the padding all sits after row `total`."""
    if settings.world_size == 1 or total == 0:
        return local
    per = math.ceil(total / settings.world_size)
    padded = torch.zeros(per, local.shape[1], dtype=local.dtype, device=settings.device)
    padded[: len(local)] = local.to(settings.device)
    parts = [torch.empty_like(padded) for _ in range(settings.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[:total].cpu()


@torch.no_grad()
def encode_gallery(
    model: FashionModel,
    ids: Sequence[str],
    cache: ImageCache,
    settings: EvalSettings,
    features: CachedFeatures | None = None,
) -> torch.Tensor:
    out = []
    for batch in loader(GalleryDataset(shard(ids, settings), cache, features), settings):
        b = to_device(batch, settings.device)
        with autocast(settings):
            out.append(model.target_batch(b).float().cpu())
    local = torch.cat(out) if out else torch.empty(0, model.config.d_model)
    return gather_shards(local, len(ids), settings)


@torch.no_grad()
def encode_queries(
    model: FashionModel,
    triplets: Sequence[Triplet],
    cache: ImageCache,
    settings: EvalSettings,
    features: CachedFeatures | None = None,
) -> torch.Tensor:
    out = []
    mine = shard(triplets, settings)
    dataset = TripletDataset(mine, cache, model.tokenizer, train=False, seed=settings.seed, features=features)
    for batch in loader(dataset, settings):
        b = to_device(batch, settings.device)
        with autocast(settings):
            out.append(model.reference_batch(b).float().cpu())
    local = torch.cat(out) if out else torch.empty(0, model.config.d_model)
    return gather_shards(local, len(triplets), settings)


def protocol_name(settings: EvalSettings) -> str:
    return EXCLUDE_REFERENCE if settings.exclude_reference else STANDARD


def check_gallery(split: CategorySplit) -> None:
    """A ranking over a gallery that lists an image twice has no single position for it: refuse it."""
    twice = [image_id for image_id, n in Counter(split.gallery).items() if n > 1]
    if twice:
        more = f" (+{len(twice) - 5} more)" if len(twice) > 5 else ""
        raise UserError(
            f"the {split.category} gallery lists {len(twice)} image id(s) more than once: {', '.join(twice[:5])}{more}"
        )


def select_queries(split: CategorySplit, settings: EvalSettings) -> list[Triplet]:
    """Every query (those whose target is missing from the gallery included); with a limit, a fixed seeded
    subset of them."""
    queries = list(split.triplets)
    if settings.query_limit is not None and len(queries) > settings.query_limit:
        g = torch.Generator().manual_seed(settings.seed)
        keep = sorted(torch.randperm(len(queries), generator=g)[: settings.query_limit].tolist())
        queries = [queries[i] for i in keep]
    return queries


def score_category(
    gallery_ids: Sequence[str],
    gallery: torch.Tensor,
    queries: Sequence[Triplet],
    query_emb: torch.Tensor,
    exclude_reference: bool = False,
) -> dict[str, float]:
    """Recall@K of one category; `missing_targets` counts the queries whose target is not in the gallery
    (each is a miss)."""
    position = {gid: i for i, gid in enumerate(gallery_ids)}
    targets = torch.tensor([position.get(q.target, -1) for q in queries], dtype=torch.long)
    own = torch.tensor([position.get(q.candidate, -1) for q in queries], dtype=torch.long)
    ranks = target_ranks(query_emb @ gallery.t(), targets, exclude_index=own if exclude_reference else None)
    scores: dict[str, float] = {f"recall_at_{k}": recall_at_k(ranks, k) for k in KS}
    scores["missing_targets"] = int((targets < 0).sum())
    return scores


def with_average(per_category: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    cats = list(per_category.values())
    average = {f"recall_at_{k}": sum(c[f"recall_at_{k}"] for c in cats) / max(len(cats), 1) for k in KS}
    return {**per_category, "average": average}


def evaluate(
    model: FashionModel,
    splits: dict[str, CategorySplit],
    cache: ImageCache,
    settings: EvalSettings,
    features: CachedFeatures | None = None,
) -> dict[str, Any]:
    """Per-category and average Recall@10/50 (fractions in [0, 1]), each category's `missing_targets`, and
    under "protocol" the name of the protocol that produced them. `features`: the vectors of the model's
    frozen parts, read instead of running them (training's validation)."""
    for split in splits.values():
        check_gallery(split)
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    try:
        for name, split in splits.items():
            queries = select_queries(split, settings)
            gallery = encode_gallery(model, split.gallery, cache, settings, features)
            query_emb = encode_queries(model, queries, cache, settings, features)
            results[name] = score_category(split.gallery, gallery, queries, query_emb, settings.exclude_reference)
    finally:
        model.train(was_training)
    return {"protocol": protocol_name(settings), **with_average(results)}


def format_table(metrics: dict[str, Any], categories: Iterable[str] | None = None) -> str:
    """One row per category (and the average), then the protocol and any queries whose target is missing."""
    names = list(categories or (k for k in metrics if k != "protocol"))
    rows = [f"{'category':<10} {'R@10':>8} {'R@50':>8}"]
    for name in names:
        m = metrics[name]
        rows.append(f"{name:<10} {100 * m['recall_at_10']:>7.2f}% {100 * m['recall_at_50']:>7.2f}%")
    if "protocol" in metrics:
        rows.append(f"protocol: {metrics['protocol']}")
    missing = {n: metrics[n]["missing_targets"] for n in names if metrics[n].get("missing_targets")}
    if missing:
        detail = ", ".join(f"{n} {c}" for n, c in missing.items())
        rows.append(f"queries whose target is not in the gallery (counted as misses): {detail}")
    return "\n".join(rows)
