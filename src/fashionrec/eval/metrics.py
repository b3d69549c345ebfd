"""Recall@K from a similarity matrix: the FashionIQ metric, kept free of models so it can be tested by hand."""

from __future__ import annotations

import torch


def target_ranks(
    similarity: torch.Tensor, target_index: torch.Tensor, exclude_index: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank of each query's target among its gallery row (ties count against the target).
    `exclude_index` (e.g. the query's own reference image) is removed from the ranking unless it is the target."""
    sims = similarity.float().clone()
    if exclude_index is not None:
        rows = torch.arange(sims.shape[0])
        keep = exclude_index >= 0
        drop = keep & (exclude_index != target_index)
        sims[rows[drop], exclude_index[drop]] = float("-inf")
    target_scores = sims.gather(1, target_index.view(-1, 1))
    # Everything scoring at least as high as the target, minus the target itself.
    return (sims >= target_scores).sum(dim=1) - 1


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Fraction of queries whose target is in the top k."""
    if ranks.numel() == 0:
        return 0.0
    return (ranks < k).float().mean().item()
