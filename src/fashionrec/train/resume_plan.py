"""Resume planning as a pure function: what a checkpoint says + what the user asks + the world size ->
the settings, the schedule and the warnings of the resumed run. Every rule of docs/resume.md is here, so
it is tested without starting a process; `train.main.run_resume` only carries the plan out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fashionrec.errors import UserError
from fashionrec.model.checkpoint_format import Checkpoint
from fashionrec.train.params import TrainConfig, merge_resume_config
from fashionrec.train.schedule import (
    continuation_spec,
    final_lr,
    onecycle_spec,
    peak_lr,
    remaining_steps,
    schedule_end_step,
    warmup_end_step,
)


def original_schedule(scheduler_state: dict[str, Any] | None, lr_groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The schedule of a checkpoint that names none: the original system's OneCycleLR, as its state describes
    it. Its own total and warm-up share, not `onecycle_spec`'s minimums for the runs we plan: a resume that
    ends where it ends keeps the saved scheduler, one that goes further gets a continuation."""
    if not scheduler_state or "total_steps" not in scheduler_state or not lr_groups or "max_lr" not in lr_groups[0]:
        return None
    total = int(scheduler_state["total_steps"])
    spec = {**onecycle_spec(lr_groups[0]["max_lr"], total), "total_steps": total}
    phases = scheduler_state.get("_schedule_phases") or []
    if phases and "end_step" in phases[0]:  # OneCycleLR's warm-up ends at step pct_start * total - 1
        spec["pct_start"] = (float(phases[0]["end_step"]) + 1) / total
    return spec


@dataclass(frozen=True)
class Saved:
    """What a resume needs to know of the checkpoint it starts from."""

    train_config: dict[str, Any] | None
    epoch: int
    preset: str | None = None  # the architecture the checkpoint holds, when it says
    samples_in_epoch: int = 0
    global_step: int = 0
    world_size: int = 1
    schedule: dict[str, Any] | None = None
    has_scheduler_state: bool = False
    lr: float | None = None
    threads: int | None = None

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Saved:
        groups = (ckpt.optimizer_state or {}).get("param_groups") or []
        return cls(
            train_config=ckpt.train_config,
            epoch=ckpt.epoch,
            preset=ckpt.model_config.preset if ckpt.model_config else None,
            samples_in_epoch=ckpt.samples_in_epoch,
            global_step=ckpt.global_step,
            world_size=ckpt.world_size,
            schedule=ckpt.schedule or original_schedule(ckpt.scheduler_state, groups),
            has_scheduler_state=ckpt.scheduler_state is not None,
            lr=ckpt.current_lr,
            threads=ckpt.threads,
        )


def resume_settings(saved: Saved, explicit: dict[str, Any], checkpoint_folder: str) -> tuple[TrainConfig, list[str]]:
    """The resumed run's settings and the names of those the user changed. Raises `UserError` for a fixed
    setting given another value, and for `--epochs` below the epochs already done."""
    if saved.train_config is None and "preset" not in explicit:
        if saved.preset is None:
            raise UserError("an original-format checkpoint (no settings inside): pass --preset")
        explicit = {**explicit, "preset": saved.preset}  # e.g. the original system's, converted on reading
    cfg, changed = merge_resume_config(explicit, saved.train_config)
    if "output_dir" not in explicit:
        cfg.output_dir = checkpoint_folder
    if cfg.epochs < saved.epoch:
        raise UserError(
            f"the checkpoint has {saved.epoch} epochs complete and --epochs is {cfg.epochs}: nothing to train; "
            "pass a larger --epochs to train further (nothing was written)"
        )
    return cfg, changed


@dataclass
class ResumePlan:
    samples_in_epoch: int  # this rank's position in the epoch in progress
    keep_schedule: bool  # load the saved scheduler state as is
    schedule: dict[str, Any]
    policy: str  # one line for the log: which schedule and why
    warnings: list[str] = field(default_factory=list)


def plan_resume(
    saved: Saved, cfg: TrainConfig, changed: list[str], world_size: int, num_triplets: int, cpu_threads: int | None
) -> ResumePlan:
    """The schedule and data position of the resumed run (see docs/resume.md, "Changing settings").
    `cpu_threads`: torch's CPU thread count when training on the CPU, else None."""
    warnings = []
    samples_in = saved.samples_in_epoch
    if saved.world_size != world_size:
        warnings.append(
            f"checkpoint was written by {saved.world_size} ranks, resuming on {world_size}: the data order of "
            "the remaining epochs changes (the run is no longer bit-exact)"
        )
        samples_in = samples_in * saved.world_size // world_size
    if None not in (saved.threads, cpu_threads) and saved.threads != cpu_threads:
        warnings.append(
            f"checkpoint was trained with {saved.threads} CPU threads, resuming with {cpu_threads}: on the CPU the run "
            f"is bit-exact only with the same count (pass --threads {saved.threads})"
        )
    for key in ("batch", "gradient_accumulation"):
        if saved.train_config is not None and key in changed:
            warnings.append(
                f"--{key.replace('_', '-')} differs from the checkpoint's ({saved.train_config[key]} -> "
                f"{getattr(cfg, key)}); the schedule is re-sized to the remaining steps"
            )

    old, step = saved.schedule, saved.global_step
    left = remaining_steps(cfg, math.ceil(num_triplets / world_size), saved.epoch, samples_in)
    lr_override = "lr" in changed  # --lr equal to the checkpoint's own setting changes nothing
    plan_changed = old is not None and schedule_end_step(old) != step + left
    if old is not None and saved.has_scheduler_state and not lr_override and not plan_changed:
        return ResumePlan(samples_in, True, old, "schedule kept as saved", warnings)

    if old is not None and step >= schedule_end_step(old):  # a finished run: its last step's LR is in force
        lr_now = final_lr(old)
        if not lr_override:
            warnings.append(
                f"the checkpoint's schedule had ended, at LR {lr_now:.3g}: the added steps continue at that LR; "
                "pass --lr to set a new peak instead"
            )
    else:
        lr_now = saved.lr if saved.lr is not None else cfg.lr
    warm = max(warmup_end_step(old) - step, 0) if old else 0
    peak = cfg.lr if lr_override else (peak_lr(old) if old and warm else lr_now)
    spec = continuation_spec(lr_now, peak, warm, left, step)
    why = [
        reason
        for reason, hit in (
            ("no scheduler state in the checkpoint", old is None or not saved.has_scheduler_state),
            ("--lr given", lr_override),
            ("the plan changed", plan_changed),
        )
        if hit
    ]
    policy = (
        f"new continuation schedule ({', '.join(why)}): LR {lr_now:.3g} -> peak {peak:.3g} "
        f"-> {spec['end_lr']:.3g} over the remaining {left} steps"
    )
    return ResumePlan(samples_in, False, spec, policy, warnings)
