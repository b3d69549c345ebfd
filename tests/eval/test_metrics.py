"""Recall@K and the FashionIQ protocol on similarity matrices and embeddings built by hand."""

from __future__ import annotations

import pytest
import torch

from fashionrec.data.fashioniq import CategorySplit, Triplet
from fashionrec.errors import UserError
from fashionrec.eval.metrics import MISS, recall_at_k, target_ranks
from fashionrec.eval.retrieval import check_gallery, format_table, score_category, with_average


def test_ranks_on_a_hand_built_matrix():
    sims = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.6, 0.5]])
    ranks = target_ranks(sims, torch.tensor([0, 0, 2]))
    assert ranks.tolist() == [0, 2, 1]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 3) == 1.0


def test_ties_count_against_the_target():
    assert target_ranks(torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([1])).tolist() == [2]


def test_the_reference_image_is_excluded_on_request_unless_it_is_the_target():
    sims = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    assert target_ranks(sims, torch.tensor([1, 0])).tolist() == [1, 0]  # the reference (0) outranks target 1
    ranks = target_ranks(sims, torch.tensor([1, 0]), exclude_index=torch.tensor([0, 0]))
    assert ranks.tolist() == [0, 0]
    assert target_ranks(sims, torch.tensor([1, 1]), exclude_index=torch.tensor([-1, 2])).tolist() == [1, 1]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_row_with_a_non_finite_score_is_a_miss_at_every_k(bad):
    sims = torch.tensor([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5], [bad] * 3])
    sims[1, 2] = bad  # the target's own score is fine; another entry is not
    ranks = target_ranks(sims, torch.tensor([0, 0, 0]))
    assert ranks.tolist() == [0, MISS, MISS]
    assert recall_at_k(ranks, 1) == recall_at_k(ranks, 10**6) == pytest.approx(1 / 3)


def test_a_target_missing_from_the_gallery_is_a_miss_even_when_the_gallery_is_smaller_than_k():
    sims = torch.tensor([[0.9, 0.1], [0.2, 0.3]])
    ranks = target_ranks(sims, torch.tensor([0, -1]))
    assert ranks.tolist() == [0, MISS]
    assert recall_at_k(ranks, 50) == 0.5
    assert target_ranks(torch.empty(2, 0), torch.tensor([-1, -1])).tolist() == [MISS, MISS]


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


# ---- one category scored from hand-built embeddings ----------------------------------------------------------
GALLERY = [f"g{i}" for i in range(60)]


def _one_hot_scores(scores: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery = identity (60 x 60), so a query embedding's dot products are its own entries."""
    return torch.eye(len(GALLERY)), torch.tensor([scores])


def _query_where_reference_and_nine_others_outrank_the_target() -> tuple[Triplet, torch.Tensor, torch.Tensor]:
    """Reference g0 scores highest, g1..g9 next, the target g10 after them: rank 10 with the reference, 9 without."""
    scores = [0.0] * len(GALLERY)
    scores[0] = 1.0
    for i in range(1, 10):
        scores[i] = 0.9
    scores[10] = 0.8
    gallery, query = _one_hot_scores(scores)
    return Triplet("g0", "g10", ("is red",), "dress"), gallery, query


def test_standard_protocol_ranks_the_reference_image_too():
    triplet, gallery, query = _query_where_reference_and_nine_others_outrank_the_target()
    scores = score_category(GALLERY, gallery, [triplet], query)
    assert scores == {"recall_at_10": 0.0, "recall_at_50": 1.0, "missing_targets": 0}


def test_exclude_reference_removes_it_from_the_ranking():
    triplet, gallery, query = _query_where_reference_and_nine_others_outrank_the_target()
    scores = score_category(GALLERY, gallery, [triplet], query, exclude_reference=True)
    assert scores == {"recall_at_10": 1.0, "recall_at_50": 1.0, "missing_targets": 0}


def test_queries_whose_target_is_missing_are_counted_as_misses_and_reported():
    found = Triplet("g0", "g1", ("is red",), "dress")
    lost = Triplet("g0", "not_in_gallery", ("is red",), "dress")
    gallery, query = _one_hot_scores([1.0 if i == 1 else 0.0 for i in range(len(GALLERY))])
    scores = score_category(GALLERY, gallery, [found, lost], torch.cat([query, query]))
    assert scores == {"recall_at_10": 0.5, "recall_at_50": 0.5, "missing_targets": 1}


def test_a_diverged_model_scores_zero_not_a_perfect_recall():
    triplet = Triplet("g0", "g1", ("is red",), "dress")
    nan_query = torch.full((1, len(GALLERY)), float("nan"))
    scores = score_category(GALLERY, torch.eye(len(GALLERY)), [triplet], nan_query)
    assert scores["recall_at_10"] == scores["recall_at_50"] == 0.0


def test_a_gallery_listing_an_image_twice_is_refused_by_name():
    check_gallery(CategorySplit("dress", [], ["a", "b", "c"]))
    with pytest.raises(UserError, match="dress gallery lists 2 image id.*: a, c"):
        check_gallery(CategorySplit("dress", [], ["a", "b", "a", "c", "c", "c"]))


def test_table_names_the_protocol_and_the_missing_targets():
    metrics = {
        "protocol": "fashioniq-standard",
        "dress": {"recall_at_10": 0.25, "recall_at_50": 0.5, "missing_targets": 3},
        "shirt": {"recall_at_10": 0.5, "recall_at_50": 1.0, "missing_targets": 0},
        "average": {"recall_at_10": 0.375, "recall_at_50": 0.75},
    }
    lines = format_table(metrics).splitlines()
    assert lines[1].split() == ["dress", "25.00%", "50.00%"]
    assert lines[3].split() == ["average", "37.50%", "75.00%"]
    assert lines[4] == "protocol: fashioniq-standard"
    assert lines[5].endswith(": dress 3")
