"""Every rule of docs/resume.md ("Changing settings on resume"), on the pure planning function: no process,
no training, just the checkpoint's facts and the flags a user passes."""

from __future__ import annotations

import math

import pytest
import torch

from fashionrec.errors import UserError
from fashionrec.train.params import TrainConfig
from fashionrec.train.resume_plan import Saved, original_schedule, plan_resume, resume_settings
from fashionrec.train.schedule import (
    build_scheduler,
    continuation_lr,
    onecycle_spec,
    remaining_steps,
)

TRIPLETS = 40  # batch 8, accumulation 1: 5 optimizer steps per epoch


def saved_run(epoch: int = 2, **changes) -> Saved:
    """A checkpoint after `epoch` of 4 planned epochs, with its OneCycle schedule and LR at that point."""
    cfg = TrainConfig(path_file="a", path_folder="b", preset="tiny", batch=8, gradient_accumulation=1, epochs=4)
    cfg.crop, cfg.landmarks = "foreground", "none"
    schedule = onecycle_spec(cfg.lr, remaining_steps(cfg, TRIPLETS, 0, 0))
    step = epoch * 5
    facts = dict(
        train_config=cfg.to_dict(),
        epoch=epoch,
        global_step=step,
        schedule=schedule,
        has_scheduler_state=True,
        lr=lr_after(schedule, step),
        threads=1,
    )
    return Saved(**{**facts, **changes})


def lr_after(spec: dict, steps: int) -> float:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    scheduler = build_scheduler(optimizer, spec)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def plan(saved: Saved, world_size: int = 1, threads: int | None = 1, precision: str = "fp32", **flags):
    cfg, changed = resume_settings(saved, flags, "ckpts")
    return cfg, changed, plan_resume(saved, cfg, changed, world_size, TRIPLETS, threads, precision)


def test_flags_left_out_keep_the_checkpoints_values_and_the_output_goes_beside_it():
    cfg, changed, p = plan(saved_run())
    assert changed == [] and cfg.epochs == 4 and cfg.batch == 8 and cfg.output_dir == "ckpts"
    assert p.keep_schedule and p.policy == "schedule kept as saved" and p.warnings == []


def test_a_stop_point_belongs_to_the_run_that_set_it():
    saved = saved_run()
    saved.train_config["stop_after_epochs"] = 2
    assert plan(saved)[0].stop_after_epochs is None


@pytest.mark.parametrize("flag, value", [("preset", "paper"), ("seed", 7), ("weight_decay", 0.1), ("crop", "none")])
def test_fixed_settings_may_repeat_but_not_change(flag, value):
    saved = saved_run()
    plan(saved, **{flag: saved.train_config[flag]})  # the same value is fine
    with pytest.raises(UserError, match=f"--{flag.replace('_', '-')} .* contradicts the checkpoint"):
        plan(saved, **{flag: value})


def test_epochs_below_the_epochs_done_is_an_error():
    with pytest.raises(UserError, match="nothing to train; pass a larger --epochs"):
        plan(saved_run(epoch=2), epochs=1)


def test_more_epochs_continue_from_the_current_lr_and_end_at_the_final_lr():
    saved = saved_run(epoch=2)
    cfg, changed, p = plan(saved, epochs=6)
    assert changed == ["epochs"] and not p.keep_schedule and "the plan changed" in p.policy
    spec = p.schedule
    assert spec["kind"] == "continuation" and spec["start_step"] == 10 and spec["total_steps"] == 20
    assert spec["start_lr"] == pytest.approx(saved.lr)  # no jump at the resume point
    assert spec["warmup_steps"] == 0  # warm-up was over
    assert continuation_lr(spec, 0) == pytest.approx(saved.lr)
    assert continuation_lr(spec, spec["total_steps"] - 1) == pytest.approx(spec["end_lr"])
    assert spec["end_lr"] == pytest.approx(spec["peak_lr"] / 2.5e5)
    lrs = [continuation_lr(spec, s) for s in range(spec["total_steps"])]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # annealing only


def test_extending_a_finished_run_starts_from_the_lr_of_its_last_step():
    """After OneCycleLR's last step the optimizer holds a value its formula gives past the end (never used);
    the continuation starts from the LR the last step used, max_lr / 2.5e5."""
    saved = saved_run(epoch=4)
    last_step_lr = lr_after(saved.schedule, saved.global_step - 1)
    assert last_step_lr == pytest.approx(3e-4 / 2.5e5, rel=1e-12) and saved.lr > 100 * last_step_lr
    _, _, p = plan(saved, epochs=6)
    assert p.schedule["start_lr"] == pytest.approx(last_step_lr, rel=1e-12)
    assert continuation_lr(p.schedule, 0) == pytest.approx(last_step_lr, rel=1e-12)


def test_a_resume_inside_the_warm_up_finishes_the_planned_warm_up_first():
    saved = saved_run(epoch=0, global_step=1)
    saved = Saved(**{**saved.__dict__, "lr": lr_after(saved.schedule, 1)})
    _, _, p = plan(saved, epochs=8)
    planned_warmup_end = int(saved.schedule["pct_start"] * saved.schedule["total_steps"])
    assert p.schedule["warmup_steps"] == planned_warmup_end - 1
    assert p.schedule["peak_lr"] == pytest.approx(saved.schedule["max_lr"])
    peak_step = p.schedule["warmup_steps"]
    assert continuation_lr(p.schedule, peak_step) == pytest.approx(p.schedule["peak_lr"])


def test_lr_sets_the_peak_of_the_remaining_schedule_at_once():
    _, changed, p = plan(saved_run(), lr=1e-3)
    assert changed == ["lr"] and "--lr given" in p.policy
    assert p.schedule["peak_lr"] == 1e-3 and p.schedule["warmup_steps"] == 0


def test_lr_equal_to_the_checkpoints_own_changes_nothing():
    saved = saved_run()
    _, changed, p = plan(saved, lr=saved.train_config["lr"])
    assert changed == [] and p.keep_schedule


def test_no_scheduler_state_gets_a_continuation_schedule():
    _, _, p = plan(saved_run(has_scheduler_state=False))
    assert not p.keep_schedule and "no scheduler state in the checkpoint" in p.policy


@pytest.mark.parametrize("flag, value", [("batch", 4), ("gradient_accumulation", 2)])
def test_another_batch_or_accumulation_warns_and_resizes_the_schedule(flag, value):
    saved = saved_run(epoch=2, samples_in_epoch=16)
    cfg, _, p = plan(saved, **{flag: value})
    assert p.warnings == [
        f"--{flag.replace('_', '-')} differs from the checkpoint's ({saved.train_config[flag]} -> {value}); "
        "the schedule is re-sized to the remaining steps"
    ]
    assert p.samples_in_epoch == 16  # the epoch in progress continues at the same sample
    assert p.schedule["total_steps"] == remaining_steps(cfg, TRIPLETS, 2, 16)


def test_another_world_size_warns_and_rescales_the_position_in_the_epoch():
    _, _, p = plan(saved_run(samples_in_epoch=16, world_size=2), world_size=4)
    assert p.samples_in_epoch == 8
    assert any("written by 2 ranks, resuming on 4" in w for w in p.warnings)


def test_another_cpu_thread_count_warns_that_exactness_needs_the_same():
    assert "pass --threads 1" in plan(saved_run(threads=1), threads=2)[2].warnings[0]
    assert plan(saved_run(threads=1), threads=None)[2].warnings == []  # on a GPU the CPU count does not matter


def test_another_precision_warns_that_the_run_is_no_longer_exact():
    """E.g. a bf16 run resumed on a CPU without native bf16, where --mixed-precision computes in fp32."""
    (warning,) = plan(saved_run(precision="bf16"), precision="fp32")[2].warnings
    assert warning.startswith("checkpoint was trained in bf16, this run computes in fp32") and "bit-exact" in warning
    assert plan(saved_run(precision="bf16"), precision="bf16")[2].warnings == []
    # Files from before the precision was recorded say only that autocast ran: either dtype resumes them.
    assert plan(saved_run(precision="bf16/fp16"), precision="fp16")[2].warnings == []
    (warning,) = plan(saved_run(precision="bf16/fp16"), precision="fp32")[2].warnings
    assert warning.startswith("checkpoint was trained in bf16/fp16, this run computes in fp32")


def test_resuming_a_continuation_schedule_again_keeps_it():
    saved = saved_run(epoch=2)
    _, _, first = plan(saved, epochs=6)
    later = Saved(**{**saved.__dict__, "epoch": 3, "global_step": 15, "schedule": first.schedule})
    later.train_config["epochs"] = 6
    _, _, again = plan(later)
    assert again.keep_schedule and again.schedule == first.schedule


def test_original_format_needs_a_preset_and_its_onecycle_state_is_continued():
    with pytest.raises(UserError, match="no settings inside.: pass --preset"):
        resume_settings(Saved(train_config=None, epoch=3), {}, "ckpts")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-4, total_steps=200)
    spec = original_schedule(scheduler.state_dict(), optimizer.state_dict()["param_groups"])
    assert spec["kind"] == "onecycle" and spec["max_lr"] == 3e-4 and spec["total_steps"] == 200
    assert math.isclose(spec["pct_start"], 0.3)  # torch's default share, read off the saved phases
    cfg, changed = resume_settings(Saved(train_config=None, epoch=3), {"preset": "tiny", "epochs": 5}, "ckpts")
    assert cfg.preset == "tiny" and cfg.batch == 64 and cfg.gradient_accumulation == 2  # the guide's defaults
    assert math.isclose(cfg.lr, 3e-4)


def their_run(total: int, taken: int) -> tuple[dict, list[dict]]:
    """The scheduler state and optimizer groups of the original system's run: OneCycleLR over `total`
    steps (their max LR and pct_start) after `taken` steps."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-4, total_steps=total, pct_start=0.1)
    for _ in range(taken):
        optimizer.step()
        scheduler.step()
    return scheduler.state_dict(), optimizer.state_dict()["param_groups"]


def their_saved(total: int, taken: int, epoch: int) -> Saved:
    state, groups = their_run(total, taken)
    return Saved(
        train_config=None, epoch=epoch, preset="original", global_step=taken,
        schedule=original_schedule(state, groups), has_scheduler_state=True, lr=groups[0]["lr"],
        beta1=groups[0]["betas"][0],
    )  # fmt: skip


def their_plan(saved: Saved, triplets: int, **flags):
    cfg, changed = resume_settings(saved, flags, "ckpts")
    return cfg, plan_resume(saved, cfg, changed, world_size=1, num_triplets=triplets, cpu_threads=None)


@pytest.mark.parametrize(
    "flags",
    [{"epochs": 20, "batch": 8, "gradient_accumulation": 2}, {"epochs": 12, "batch": 4, "gradient_accumulation": 4}],
)
def test_their_onecycle_goes_on_as_saved_whatever_the_flags(flags):
    """Their resume_training.py builds a OneCycleLR for its own flags and loads the saved state over it: the
    saved curve goes on, its total and position, and steps are counted on full groups only."""
    saved = their_saved(total=100, taken=10 * 5, epoch=10)  # their run: 10 epochs x 5 steps of a 20-epoch plan
    cfg, p = their_plan(saved, TRIPLETS, **flags)
    assert p.keep_schedule and p.schedule == saved.schedule and p.warnings == []
    assert p.policy == "the saved OneCycleLR continued (step 50 of 100)"
    assert remaining_steps(cfg, TRIPLETS, 10, 0) == (cfg.epochs - 10) * (
        math.ceil(TRIPLETS / cfg.batch) // cfg.gradient_accumulation
    )


def test_a_used_up_original_onecycle_goes_on_where_their_script_stops():
    """Their plan was 2 steps, both taken: their script takes one step more with the LR OneCycleLR leaves in
    the optimizer, then its scheduler raises "Tried to step"; here the saved schedule is kept (the same step)
    and the run goes on at its final LR, with one line saying so."""
    saved = their_saved(total=2, taken=2, epoch=1)
    _, p = their_plan(saved, 8, epochs=2, batch=2, gradient_accumulation=1)
    assert p.keep_schedule and p.schedule["kind"] == "onecycle" and p.schedule["total_steps"] == 2
    (line,) = p.warnings
    assert "the saved OneCycleLR plans 2 steps and this run reaches step 6" in line
    assert "resume_training.py would stop after step 3" in line and "Tried to step" in line
    assert "final LR 1.2e-09 for the 3 steps after it" in line and "--lr" in line
    _, exactly = their_plan(saved, 2, epochs=2, batch=2, gradient_accumulation=1)
    assert "this run ends with that step" in exactly.warnings[0]
    _, within = their_plan(their_saved(total=4, taken=2, epoch=1), 4, epochs=2, batch=2, gradient_accumulation=1)
    assert within.keep_schedule and within.warnings == []


def test_their_file_without_scheduler_state_gets_a_new_onecycle_sized_their_way():
    """`remaining epochs * len(loader) // ga` steps from where the run is, their max LR."""
    saved = Saved(train_config=None, epoch=3, preset="original", global_step=0, has_scheduler_state=False)
    cfg, p = their_plan(saved, 42, epochs=5, batch=4, gradient_accumulation=2)  # 11 micro-batches an epoch
    assert not p.keep_schedule and p.schedule == onecycle_spec(3e-4, 2 * 11 // 2)
    assert "new OneCycleLR (no scheduler state in the checkpoint) over 11 steps" in p.policy


def test_their_plain_train_py_files_go_on_at_their_constant_lr():
    """Adam at 4e-4, no schedule, no accumulation, no weight decay: the same LR (the optimizer keeps its betas),
    unless --lr asks for another; a later resume keeps it."""
    saved = Saved(train_config=None, epoch=5, preset="original", lr=4e-4, beta1=0.55, constant_lr=True)
    cfg, p = their_plan(saved, TRIPLETS, epochs=8)
    assert (cfg.gradient_accumulation, cfg.weight_decay) == (1, 0.0)
    assert not p.keep_schedule and (p.schedule["kind"], p.schedule["lr"]) == ("constant", 4e-4)
    assert "constant LR 0.0004 as the original system's train.py trained" in p.policy
    assert their_plan(saved, TRIPLETS, epochs=8, lr=1e-4)[1].schedule["lr"] == 1e-4
    later = Saved(
        train_config=cfg.to_dict(), epoch=6, preset="original", global_step=5, schedule=p.schedule,
        has_scheduler_state=True, lr=4e-4,
    )  # fmt: skip
    _, again = their_plan(later, TRIPLETS, epochs=9)
    assert again.keep_schedule and again.schedule == p.schedule
    assert their_plan(later, TRIPLETS, lr=2e-4)[1].schedule["lr"] == 2e-4


def test_a_replanned_continuation_starts_from_the_beta1_in_force():
    saved = saved_run(epoch=2, beta1=0.9)
    _, _, p = plan(saved, epochs=6)
    assert (p.schedule["start_beta1"], p.schedule["peak_beta1"], p.schedule["end_beta1"]) == (0.9, 0.9, 0.95)
    assert "beta1 0.9 -> 0.9 -> 0.95" in p.policy
    assert plan(saved, lr=1e-3)[2].schedule["peak_beta1"] == 0.85  # a new peak: beta1 where OneCycleLR has it
