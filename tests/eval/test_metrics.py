"""Recall@K on similarity matrices built by hand."""

from __future__ import annotations

import pytest
import torch

from fashionrec.eval.metrics import recall_at_k, target_ranks
from fashionrec.eval.retrieval import with_average


def test_ranks_on_a_hand_built_matrix():
    sims = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.6, 0.5]])
    ranks = target_ranks(sims, torch.tensor([0, 0, 2]))
    assert ranks.tolist() == [0, 2, 1]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 3) == 1.0


def test_ties_count_against_the_target():
    assert target_ranks(torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([1])).tolist() == [2]


def test_the_reference_image_is_excluded_unless_it_is_the_target():
    sims = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    ranks = target_ranks(sims, torch.tensor([1, 0]), exclude_index=torch.tensor([0, 0]))
    assert ranks.tolist() == [0, 0]
    assert target_ranks(sims, torch.tensor([1, 1]), exclude_index=torch.tensor([-1, 2])).tolist() == [1, 1]


def test_recall_at_10_of_a_random_ranking_is_chance():
    g = torch.Generator().manual_seed(0)
    sims = torch.rand(4000, 100, generator=g)
    ranks = target_ranks(sims, torch.randint(0, 100, (4000,), generator=g))
    assert recall_at_k(ranks, 10) == pytest.approx(0.10, abs=0.02)


def test_average_is_the_mean_of_categories():
    out = with_average(
        {"dress": {"recall_at_10": 0.2, "recall_at_50": 0.6}, "shirt": {"recall_at_10": 0.4, "recall_at_50": 0.8}}
    )
    assert out["average"] == pytest.approx({"recall_at_10": 0.3, "recall_at_50": 0.7})
