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
    MAX_MOMENTUM,
    constant_spec,
    continuation_spec,
    final_lr,
    full_groups_only,
    onecycle_spec,
    peak_lr,
    remaining_steps,
    schedule_end_step,
    their_onecycle_steps,
    warmup_end_step,
)


def original_schedule(scheduler_state: dict[str, Any] | None, lr_groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The schedule of a checkpoint that names none: the original system's OneCycleLR, as its state describes
    it. Its own total and warm-up share, not `onecycle_spec`'s minimums for the runs we plan: it is continued
    as saved, as their `resume_training.py` does (see `plan_resume`)."""
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
    beta1: float | None = None
    threads: int | None = None
    precision: str | None = None  # "fp32", "bf16", "fp16", or "bf16/fp16" (older files); None: not known
    constant_lr: bool = False  # the original system's plain train.py: Adam at a constant LR, no schedule

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
            beta1=float(groups[0]["betas"][0]) if groups and "betas" in groups[0] else None,
            threads=ckpt.threads,
            precision=ckpt.precision,
            constant_lr=ckpt.trained_at_constant_lr,
        )


def resume_settings(saved: Saved, explicit: dict[str, Any], checkpoint_folder: str) -> tuple[TrainConfig, list[str]]:
    """The resumed run's settings and the names of those the user changed. Raises `UserError` for a fixed
    setting given another value, and for `--epochs` below the epochs already done."""
    if saved.train_config is None and "preset" not in explicit:
        if saved.preset is None:
            raise UserError("an original-format checkpoint (no settings inside): pass --preset")
        explicit = {**explicit, "preset": saved.preset}  # e.g. the original system's, converted on reading
        if saved.constant_lr:  # their plain train.py: no accumulation, Adam without weight decay
            explicit = {"gradient_accumulation": 1, "weight_decay": 0.0, **explicit}
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
    saved: Saved,
    cfg: TrainConfig,
    changed: list[str],
    world_size: int,
    num_triplets: int,
    cpu_threads: int | None,
    precision: str = "fp32",
) -> ResumePlan:
    """The schedule and data position of the resumed run (see docs/resume.md, "Changing settings").
    `cpu_threads`: torch's CPU thread count when training on the CPU, else None. `precision`: what this run
    computes in (`trainer.amp_settings` on this device)."""
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
    if saved.precision is not None and precision not in saved.precision.split("/"):
        warnings.append(
            f"checkpoint was trained in {saved.precision}, this run computes in {precision}: the results differ "
            "from those of an uninterrupted run (the run is no longer bit-exact)"
        )
    theirs = full_groups_only(cfg.preset) and "lr" not in changed
    for key in ("batch", "gradient_accumulation"):
        if saved.train_config is not None and key in changed:
            warnings.append(
                f"--{key.replace('_', '-')} differs from the checkpoint's ({saved.train_config[key]} -> "
                f"{getattr(cfg, key)}); "
                + (
                    "the saved schedule goes on as it is, as in the original system"
                    if theirs
                    else "the schedule is re-sized to the remaining steps"
                )
            )

    old, step = saved.schedule, saved.global_step
    rank_samples = math.ceil(num_triplets / world_size)
    left = remaining_steps(cfg, rank_samples, saved.epoch, samples_in)
    lr_override = "lr" in changed  # --lr equal to the checkpoint's own setting changes nothing
    kept = old is not None and saved.has_scheduler_state
    if kept and old["kind"] == "constant" and not lr_override:
        return ResumePlan(samples_in, True, old, f"constant LR {old['lr']:.3g} kept as saved", warnings)
    if saved.constant_lr or (kept and old["kind"] == "constant"):
        lr = cfg.lr if lr_override else (saved.lr if saved.lr is not None else cfg.lr)
        policy = f"constant LR {lr:.3g} as the original system's train.py trained (Adam's betas kept)"
        return ResumePlan(samples_in, False, constant_spec(lr, left, step), policy, warnings)
    if theirs:
        their = _their_resume(saved, cfg, rank_samples, left, warnings)
        if their is not None:
            return ResumePlan(samples_in, their[0], their[1], their[2], warnings)

    plan_changed = old is not None and schedule_end_step(old) != step + left
    if kept and not lr_override and not plan_changed:
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
    beta1 = saved.beta1 if saved.beta1 is not None else MAX_MOMENTUM
    spec = continuation_spec(lr_now, peak, warm, left, step, beta1, new_peak=lr_override)
    why = [
        reason
        for reason, hit in (
            ("no scheduler state in the checkpoint", not kept),
            ("--lr given", lr_override),
            ("the plan changed", plan_changed),
        )
        if hit
    ]
    policy = (
        f"new continuation schedule ({', '.join(why)}): LR {lr_now:.3g} -> peak {peak:.3g} "
        f"-> {spec['end_lr']:.3g} over the remaining {left} steps, beta1 {beta1:.3g} -> "
        f"{spec['peak_beta1']:.3g} -> {spec['end_beta1']:.3g}"
    )
    return ResumePlan(samples_in, False, spec, policy, warnings)


def _their_resume(
    saved: Saved, cfg: TrainConfig, rank_samples: int, left: int, warnings: list[str]
) -> tuple[bool, dict[str, Any], str] | None:
    """What the original system's `resume_training.py` does with this checkpoint, as (keep the saved
    scheduler, schedule, policy line); None when its schedule is not a OneCycleLR (a continuation set by an
    earlier `--lr`: planned as for every preset). It builds a OneCycleLR and loads the saved state over it,
    so the saved curve goes on whatever the flags (its total, its position); a file without scheduler state
    gets a new OneCycleLR sized `remaining epochs * micro-batches per epoch // accumulation`."""
    old, step = saved.schedule, saved.global_step
    if old is None or not saved.has_scheduler_state:
        total = their_onecycle_steps(cfg.epochs - saved.epoch, rank_samples, cfg.batch, cfg.gradient_accumulation)
        spec = onecycle_spec(cfg.lr, total, start_step=step)
        return False, spec, f"new OneCycleLR (no scheduler state in the checkpoint) over {spec['total_steps']} steps"
    if old["kind"] != "onecycle":
        return None
    end = schedule_end_step(old)
    after = step + left - (end + 1)  # their scheduler.step() after step end + 1 raises
    if after >= 0:
        then = f"this run goes on at the schedule's final LR {final_lr(old):.3g} for the {after} steps after it"
        warnings.append(
            f"the saved OneCycleLR plans {old['total_steps']} steps and this run reaches step {step + left}: the "
            f"original system's resume_training.py would stop after step {end + 1}, before saving it (\"Tried to "
            f'step ... times"); {then if after else "this run ends with that step"} (pass --lr to set a new peak)'
        )
    return True, old, f"the saved OneCycleLR continued (step {step - old['start_step']} of {old['total_steps']})"
