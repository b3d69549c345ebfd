"""Schedules: OneCycle for short runs, and the continuation used when a resume changes the plan."""

from __future__ import annotations

import pytest
import torch

from fashionrec.train.schedule import (
    build_scheduler,
    continuation_lr,
    continuation_spec,
    onecycle_spec,
    warmup_end_step,
)


def lrs(spec: dict, steps: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    sched = build_scheduler(opt, spec)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", [1, 2, 3, 10, 11, 200, 1000])
def test_onecycle_warms_up_for_a_tenth_of_the_steps_and_ends_at_max_lr_over_25e4(total):
    """torch's OneCycleLR semantics: the first step at max_lr / 25, the peak max_lr used by step
    pct_start x total (a tenth of the run; at least 2 steps on tiny runs), the last step at
    max_lr / (25 x 1e4)."""
    spec = onecycle_spec(3e-4, total)
    steps = spec["total_steps"]
    values = lrs(spec, steps)
    warm = warmup_end_step(spec)
    assert warm == max(steps // 10, 2) and warm == pytest.approx(spec["pct_start"] * steps)
    assert values[0] == pytest.approx(3e-4 / 25, rel=1e-12)
    assert values[warm - 1] == pytest.approx(3e-4, rel=1e-12) and max(values) == values[warm - 1]
    assert all(a < b for a, b in zip(values[:warm], values[1:warm], strict=False))  # rising to the peak
    assert all(a >= b for a, b in zip(values[warm - 1 :], values[warm:], strict=False))  # then annealing
    assert values[-1] == pytest.approx(3e-4 / (25 * 1e4), rel=1e-12)


def test_continuation_starts_where_the_run_was_and_ends_at_the_final_lr():
    spec = continuation_spec(start_lr=1e-4, peak_lr=1e-4, warmup_steps=0, total_steps=50, start_step=100)
    values = lrs(spec, 50)
    assert values[0] == pytest.approx(1e-4)
    assert values[-1] == pytest.approx(spec["end_lr"])
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_continuation_warms_up_to_a_new_peak_without_a_jump():
    spec = continuation_spec(start_lr=1e-5, peak_lr=3e-4, warmup_steps=10, total_steps=40, start_step=0)
    assert continuation_lr(spec, 0) == pytest.approx(1e-5)
    assert continuation_lr(spec, 10) == pytest.approx(3e-4)
    assert max(continuation_lr(spec, s) for s in range(40)) == pytest.approx(3e-4)
