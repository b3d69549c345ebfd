"""Learning-rate schedules, described by a small dict that travels in the checkpoint so the right scheduler
is rebuilt before its state is loaded.

- `onecycle`: torch's OneCycleLR (cosine, pct_start 0.1), sized in optimizer steps for the planned run.
- `continuation`: used when a resumed run changes the plan (more or fewer epochs, another batch size or
  accumulation, `--lr`, or a checkpoint without scheduler state). It starts from the LR in force at the
  resume point, so the curve is continuous; it warms up to the peak over what is left of the planned
  warm-up (none once warm-up is over, where `--lr` sets the new peak at once), then anneals with a cosine
  to peak / 2.5e5 (OneCycleLR's final LR) exactly at the new last step. No "Tried to step N times" error:
  the schedule always spans the steps that remain.

With several parameter groups (optim.py), each group's curve is the schedule's times its `lr_scale`; the
spec's LRs are those of the first group, the heads, at `--lr`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

if TYPE_CHECKING:
    from fashionrec.train.params import TrainConfig

PCT_START = 0.1
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4


def onecycle_spec(max_lr: float, total_steps: int) -> dict[str, Any]:
    """OneCycleLR needs at least two warm-up steps and one annealing step (else it divides by zero), so
    very short runs get a slightly longer warm-up share."""
    total = max(int(total_steps), 3)
    return {
        "kind": "onecycle",
        "max_lr": max_lr,
        "total_steps": total,
        "pct_start": max(PCT_START, 2 / total),
        "start_step": 0,
    }


def continuation_spec(
    start_lr: float, peak_lr: float, warmup_steps: int, total_steps: int, start_step: int
) -> dict[str, Any]:
    return {
        "kind": "continuation",
        "start_lr": start_lr,
        "peak_lr": peak_lr,
        "end_lr": peak_lr / (DIV_FACTOR * FINAL_DIV_FACTOR),
        "warmup_steps": max(int(warmup_steps), 0),
        "total_steps": max(int(total_steps), 1),
        "start_step": start_step,
    }


def continuation_lr(spec: dict[str, Any], step: int) -> float:
    """LR after `step` steps of a continuation schedule (closed form, so resuming it is exact)."""
    warm, total = spec["warmup_steps"], spec["total_steps"]
    if step < warm:
        return spec["start_lr"] + (spec["peak_lr"] - spec["start_lr"]) * (1 - math.cos(math.pi * step / warm)) / 2
    span = max(total - 1 - warm, 1)
    t = min(step - warm, span) / span
    return spec["end_lr"] + (spec["peak_lr"] - spec["end_lr"]) * (1 + math.cos(math.pi * t)) / 2


def build_scheduler(optimizer: Optimizer, spec: dict[str, Any]) -> LRScheduler:
    if spec["kind"] == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=[spec["max_lr"] * group.get("lr_scale", 1.0) for group in optimizer.param_groups],
            total_steps=spec["total_steps"],
            pct_start=spec.get("pct_start", PCT_START),
            anneal_strategy="cos",
            div_factor=DIV_FACTOR,
            final_div_factor=FINAL_DIV_FACTOR,
        )
    if spec["kind"] == "continuation":
        for group in optimizer.param_groups:
            group["lr"] = spec["peak_lr"] * group.get("lr_scale", 1.0)
            group.pop("initial_lr", None)
        return LambdaLR(optimizer, lambda step: continuation_lr(spec, step) / spec["peak_lr"])
    raise ValueError(f"unknown schedule kind {spec['kind']!r}")


def schedule_end_step(spec: dict[str, Any]) -> int:
    """Global optimizer step at which the schedule is used up."""
    return spec["start_step"] + spec["total_steps"]


def warmup_end_step(spec: dict[str, Any]) -> int:
    if spec["kind"] == "onecycle":
        return spec["start_step"] + int(spec.get("pct_start", PCT_START) * spec["total_steps"])
    return spec["start_step"] + spec["warmup_steps"]


def peak_lr(spec: dict[str, Any]) -> float:
    return spec["max_lr"] if spec["kind"] == "onecycle" else spec["peak_lr"]


def final_lr(spec: dict[str, Any]) -> float:
    """The LR of the schedule's last step. Past it, the optimizer may hold another value (OneCycleLR's
    formula runs on after its last step), which is never used."""
    return spec["max_lr"] / (DIV_FACTOR * FINAL_DIV_FACTOR) if spec["kind"] == "onecycle" else spec["end_lr"]


def current_lr(optimizer: Optimizer) -> float:
    """The first group's LR: the whole model's, or the heads' (at the --lr peak) when parts have their own."""
    return float(optimizer.param_groups[0]["lr"])


def steps_per_epoch(samples: int, batch: int, accumulation: int) -> int:
    """Optimizer steps for `samples` samples: the last, partial accumulation group still steps."""
    return math.ceil(math.ceil(samples / batch) / accumulation) if samples > 0 else 0


def remaining_steps(cfg: TrainConfig, rank_samples: int, epochs_done: int, samples_in_epoch: int) -> int:
    """Optimizer steps from a position (epochs done + samples into the next epoch) to the end of the run."""
    per_epoch = steps_per_epoch(rank_samples, cfg.batch, cfg.gradient_accumulation)
    partial = (
        steps_per_epoch(rank_samples - samples_in_epoch, cfg.batch, cfg.gradient_accumulation)
        if samples_in_epoch
        else 0
    )
    full_epochs = cfg.epochs - epochs_done - (1 if samples_in_epoch else 0)
    return partial + max(full_epochs, 0) * per_epoch
