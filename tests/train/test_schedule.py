"""Schedules: OneCycle for short runs, and the continuation used when a resume changes the plan."""

from __future__ import annotations

import pytest
import torch

from fashionrec.train.schedule import build_scheduler, continuation_lr, continuation_spec, onecycle_spec


def lrs(spec: dict, steps: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    sched = build_scheduler(opt, spec)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", [1, 2, 3, 10, 11, 200])
def test_onecycle_runs_its_whole_plan_even_when_tiny(total):
    spec = onecycle_spec(3e-4, total)
    values = lrs(spec, spec["total_steps"])
    assert max(values) == pytest.approx(3e-4, rel=0.05)
    assert values[-1] < values[0]


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
