"""Schedules: OneCycle for short runs (and past its end, where the original system's resumes could take it),
the continuation used when a resume changes the plan (beta1 moving with its LR), the constant LR of the
original system's plain train.py, and the step counts of both stepping rules."""

from __future__ import annotations

import pytest
import torch

from fashionrec.train.schedule import (
    build_scheduler,
    constant_spec,
    continuation_beta1,
    continuation_lr,
    continuation_spec,
    onecycle_spec,
    steps_per_epoch,
    their_onecycle_steps,
    warmup_end_step,
)


def curve(spec: dict, steps: int, optimizer: torch.optim.Optimizer | None = None) -> list[tuple[float, ...]]:
    """(LR, beta1, beta2) in force at each of `steps` optimizer steps."""
    opt = optimizer or torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    sched = build_scheduler(opt, spec)
    out = []
    for _ in range(steps):
        group = opt.param_groups[0]
        out.append((group["lr"], *group["betas"]))
        opt.step()
        sched.step()
    return out


def lrs(spec: dict, steps: int) -> list[float]:
    return [lr for lr, *_ in curve(spec, steps)]


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


def test_onecycle_goes_past_its_end_at_its_final_lr_where_torchs_raises():
    """Every step torch's OneCycleLR takes (its total, and the one after it that the original system's resume
    takes with the value its formula gives past the end) is the same, LR and betas; then torch's raises
    "Tried to step" while ours holds the end of the curve: the final LR and beta1 0.95."""
    total = 20
    ours = curve(onecycle_spec(3e-4, total), total + 4)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    torchs = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=total, pct_start=0.1)
    for step in range(total + 1):
        assert ours[step] == (opt.param_groups[0]["lr"], *opt.param_groups[0]["betas"])
        opt.step()
        if step < total:
            torchs.step()
    with pytest.raises(ValueError, match="Tried to step"):
        torchs.step()
    assert ours[total + 1 :] == [(pytest.approx(3e-4 / 2.5e5, rel=1e-12), 0.95, 0.999)] * 3


def test_continuation_moves_beta1_against_its_lr_as_onecycle_does():
    """Warm-up: beta1 from the value in force to 0.85 at the peak; annealing: back to 0.95 at the last step,
    the same share of the way as the LR's (so beta1 is affine in the LR within each phase)."""
    spec = continuation_spec(1e-5, 3e-4, warmup_steps=6, total_steps=30, start_step=0, start_beta1=0.9)
    values = curve(spec, 30)
    assert values[0][1:] == (0.9, 0.999) and values[6][:2] == (pytest.approx(3e-4), pytest.approx(0.85))
    assert values[-1][:2] == (pytest.approx(spec["end_lr"]), pytest.approx(0.95))
    for step, (lr, beta1, beta2) in enumerate(values):
        assert beta1 == pytest.approx(continuation_beta1(spec, step), rel=1e-12) and beta2 == 0.999
        if step < 6:
            assert (beta1 - 0.9) / (0.85 - 0.9) == pytest.approx((lr - 1e-5) / (3e-4 - 1e-5), abs=1e-9)
        else:
            share = (spec["peak_lr"] - lr) / (spec["peak_lr"] - spec["end_lr"])
            assert (beta1 - 0.85) / (0.95 - 0.85) == pytest.approx(share, abs=1e-9)


def test_a_continuation_from_the_lr_in_force_starts_from_the_beta1_in_force():
    """No warm-up and no new peak: the curve goes on from where the run was, LR and beta1 alike; a new peak
    (--lr) puts beta1 where OneCycleLR has it at a peak, 0.85."""
    spec = continuation_spec(1e-4, 1e-4, warmup_steps=0, total_steps=20, start_step=40, start_beta1=0.9)
    values = curve(spec, 20)
    assert values[0][:2] == (pytest.approx(1e-4), 0.9) and values[-1][1] == pytest.approx(0.95)
    assert all(a[1] < b[1] for a, b in zip(values, values[1:], strict=False))
    new_peak = continuation_spec(1e-6, 1e-3, 0, 20, 40, start_beta1=0.95, new_peak=True)
    assert curve(new_peak, 1)[0][:2] == (pytest.approx(1e-3), 0.85)


def test_constant_schedule_keeps_the_lr_and_the_optimizers_betas():
    """The original system's plain train.py: Adam at 4e-4 with betas (0.55, 0.999), nothing scheduled."""
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0, betas=(0.55, 0.999))
    assert curve(constant_spec(4e-4, 5, 10), 8, adam) == [(4e-4, 0.55, 0.999)] * 8


def test_step_counts_of_both_stepping_rules():
    """563 micro-batches (18,000 triplets at --batch 32): fashionrec's presets also step each epoch's partial
    group; the original system's loop steps on full groups only, and sized its OneCycleLR by all of them."""
    assert steps_per_epoch(18_000, 32, 4) == 141 and steps_per_epoch(18_000, 32, 4, full_groups=True) == 140
    assert steps_per_epoch(18_000, 32, 2, full_groups=True) == 281
    assert their_onecycle_steps(100, 18_000, 32, 2) == 28_150 > 100 * 281
