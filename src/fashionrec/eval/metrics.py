"""Recall@K from a similarity matrix: the FashionIQ metric, kept free of models so it can be tested by hand."""

from __future__ import annotations

import torch

# The rank of a query that can never be a hit: its target is not in the gallery, or its scores are not finite.
MISS = torch.iinfo(torch.long).max


def target_ranks(
    similarity: torch.Tensor, target_index: torch.Tensor, exclude_index: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank of each query's target among its gallery row (ties count against the target).

    `target_index` -1 means the target is not in the gallery; such a query gets rank MISS, and so does a
    query whose row holds a NaN or an infinity (a diverged model must not score a perfect recall).
    `exclude_index` (e.g. the query's own reference image) is removed from the ranking unless it is the
    target; -1 excludes nothing."""
    if similarity.shape[1] == 0:
        return torch.full((similarity.shape[0],), MISS, dtype=torch.long)
    sims = similarity.float().clone()
    rows = torch.arange(sims.shape[0])
    broken = ~torch.isfinite(sims).all(dim=1) | (target_index < 0)
    if exclude_index is not None:
        drop = (exclude_index >= 0) & (exclude_index != target_index)
        sims[rows[drop], exclude_index[drop]] = float("-inf")
    target_scores = sims.gather(1, target_index.clamp(min=0).view(-1, 1))
    # Everything scoring at least as high as the target, minus the target itself.
    ranks = (sims >= target_scores).sum(dim=1) - 1
    return ranks.masked_fill(broken, MISS)


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Fraction of queries whose target is in the top k (misses count in the denominator)."""
    if ranks.numel() == 0:
        return 0.0
    return (ranks < k).float().mean().item()


def diagonal_topk_recall(similarity: torch.Tensor, k: int) -> float:
    """Fraction of queries i whose column i is among their row's top min(k, columns) by `torch.topk`: the
    original system's count, each query's own target among the targets of all queries (ties broken as
    topk breaks them). A row holding a NaN or an infinity is a miss."""
    n = similarity.shape[0]
    if n == 0:
        return 0.0
    top = similarity.float().topk(min(k, similarity.shape[1]), dim=1).indices
    hits = (top == torch.arange(n).view(-1, 1)).any(dim=1) & torch.isfinite(similarity).all(dim=1)
    return hits.float().mean().item()
