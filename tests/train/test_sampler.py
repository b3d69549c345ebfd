"""The training data order (`ResumableSampler`): what docs/distributed.md says a step of N ranks sees, the
padding when the triplet count is not a multiple of N, and a start in the middle of an epoch."""

from __future__ import annotations

import math

import pytest

from fashionrec.train.data import ResumableSampler


def orders(items: int, world: int, epoch: int = 0, start: int = 0, seed: int = 5) -> list[list[int]]:
    """Each rank's order of dataset indices for `epoch`."""
    out = []
    for rank in range(world):
        sampler = ResumableSampler(range(items), seed, rank, world)
        sampler.set_position(epoch, start)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize("items", [36, 35, 34])
@pytest.mark.parametrize("world", [2, 3])
def test_a_step_on_n_ranks_sees_the_single_process_step_with_the_global_batch(items, world):
    batch = 4  # per rank
    (single,) = orders(items, 1)
    ranks = orders(items, world)
    per_rank = math.ceil(items / world)
    extra = per_rank * world - items
    assert all(len(r) == per_rank for r in ranks) and extra < world  # up to N - 1 extra samples
    padded = single + single[:extra]  # the permutation's first items again, so every rank has as many
    for k in range(0, per_rank, batch):
        step = sorted(i for r in ranks for i in r[k : k + batch])
        assert step == sorted(padded[k * world : (k + batch) * world])
    repeated = [i for i in set(padded) if padded.count(i) > 1]
    assert sorted(repeated) == sorted(single[:extra])  # only the padding repeats, in the epoch's last step


@pytest.mark.parametrize("world", [1, 2])
def test_a_mid_epoch_start_continues_at_the_next_sample_and_epochs_reshuffle(world):
    whole = orders(35, world, epoch=3)
    assert orders(35, world, epoch=3, start=10) == [r[10:] for r in whole]
    assert orders(35, world, epoch=4) != whole
    assert orders(35, world, epoch=3) == whole  # a pure function of (seed, epoch)
