"""Learning-rate schedules, described by a small dict that travels in the checkpoint so the right scheduler
is rebuilt before its state is loaded.

- `onecycle`: torch's OneCycleLR (cosine, pct_start 0.1), sized in optimizer steps for the planned run. It
  moves AdamW's beta1 inversely to the LR (0.95 -> 0.85 over the warm-up, back to 0.95 by the end). Stepped
  past its last step it keeps the end of its curve (final LR, beta1 0.95) where torch's raises "Tried to step
  N times": the original system's resumes could run past it (see `resume_plan`).
- `continuation`: used when a resumed run changes the plan (more or fewer epochs, another batch size or
  accumulation, `--lr`, or a checkpoint without scheduler state). It starts from the LR in force at the
  resume point, so the curve is continuous; it warms up to the peak over what is left of the planned
  warm-up (none once warm-up is over, where `--lr` sets the new peak at once), then anneals with a cosine
  to peak / 2.5e5 (OneCycleLR's final LR) exactly at the new last step. No "Tried to step N times" error:
  the schedule always spans the steps that remain. beta1 moves with the LR as in OneCycleLR's cycle: from
  the beta1 in force towards 0.85 while the LR rises, then to 0.95 as it anneals.
- `constant`: one LR throughout, betas untouched: the original system's plain `train.py` (Adam at 4e-4).

With several parameter groups (optim.py), each group's curve is the schedule's times its `lr_scale`; the
spec's LRs are those of the first group, the heads, at `--lr`.

Two stepping rules: fashionrec's presets step a partial accumulation group at each epoch's end; the
`original` preset steps on full groups only and carries the leftover micro-batches' gradients into the
next epoch's first step, as the original system's loop does (`(batch_idx + 1) % ga == 0`, no zero_grad at
an epoch's start). `steps_per_epoch` and the step counts below follow the run's rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

if TYPE_CHECKING:
    from fashionrec.train.params import TrainConfig

PCT_START = 0.1
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
BASE_MOMENTUM = 0.85  # OneCycleLR's beta1 at the peak LR
MAX_MOMENTUM = 0.95  # ... and at both ends of its cycle
FULL_GROUPS_PRESETS = frozenset({"original"})


def full_groups_only(preset: str) -> bool:
    """The original system's stepping rule (full accumulation groups only, leftover gradients carried)."""
    return preset in FULL_GROUPS_PRESETS


def onecycle_spec(max_lr: float, total_steps: int, start_step: int = 0) -> dict[str, Any]:
    """OneCycleLR needs at least two warm-up steps and one annealing step (else it divides by zero), so
    very short runs get a slightly longer warm-up share."""
    total = max(int(total_steps), 3)
    return {
        "kind": "onecycle",
        "max_lr": max_lr,
        "total_steps": total,
        "pct_start": max(PCT_START, 2 / total),
        "start_step": start_step,
    }


def continuation_spec(
    start_lr: float,
    peak_lr: float,
    warmup_steps: int,
    total_steps: int,
    start_step: int,
    start_beta1: float = MAX_MOMENTUM,
    new_peak: bool = False,
) -> dict[str, Any]:
    """`start_beta1`: AdamW's beta1 in force at the resume point. `new_peak`: the LR jumps to a new peak
    (`--lr`), so beta1 jumps to its value at a peak, 0.85, as OneCycleLR's would."""
    warmup = max(int(warmup_steps), 0)
    return {
        "kind": "continuation",
        "start_lr": start_lr,
        "peak_lr": peak_lr,
        "end_lr": peak_lr / (DIV_FACTOR * FINAL_DIV_FACTOR),
        "warmup_steps": warmup,
        "total_steps": max(int(total_steps), 1),
        "start_step": start_step,
        "start_beta1": start_beta1,
        "peak_beta1": BASE_MOMENTUM if warmup or new_peak else start_beta1,
        "end_beta1": MAX_MOMENTUM,
    }


def constant_spec(lr: float, total_steps: int, start_step: int) -> dict[str, Any]:
    return {"kind": "constant", "lr": lr, "total_steps": max(int(total_steps), 1), "start_step": start_step}


def _warmup_share(spec: dict[str, Any], step: int) -> float:
    return (1 - math.cos(math.pi * step / spec["warmup_steps"])) / 2


def _anneal_share(spec: dict[str, Any], step: int) -> float:
    """0 at the peak, 1 at the last step."""
    warm = spec["warmup_steps"]
    span = max(spec["total_steps"] - 1 - warm, 1)
    return (1 - math.cos(math.pi * min(step - warm, span) / span)) / 2


def continuation_lr(spec: dict[str, Any], step: int) -> float:
    """LR after `step` steps of a continuation schedule (closed form, so resuming it is exact)."""
    if step < spec["warmup_steps"]:
        return spec["start_lr"] + (spec["peak_lr"] - spec["start_lr"]) * _warmup_share(spec, step)
    return spec["peak_lr"] + (spec["end_lr"] - spec["peak_lr"]) * _anneal_share(spec, step)


def continuation_beta1(spec: dict[str, Any], step: int) -> float | None:
    """beta1 after `step` steps: the same shares of its way as the LR's, in the other direction. None for
    continuations saved before beta1 moved with them (they keep beta1 as it is, so resuming them stays exact)."""
    if "start_beta1" not in spec:
        return None
    if step < spec["warmup_steps"]:
        return spec["start_beta1"] + (spec["peak_beta1"] - spec["start_beta1"]) * _warmup_share(spec, step)
    return spec["peak_beta1"] + (spec["end_beta1"] - spec["peak_beta1"]) * _anneal_share(spec, step)


class OpenEndedOneCycleLR(OneCycleLR):
    """torch's OneCycleLR, which raises once stepped past its total; this one stays at the end of its curve
    (each group's final LR and beta1) for the steps after it. Its state dict is OneCycleLR's."""

    def get_lr(self) -> list[float]:
        if self.last_epoch <= self.total_steps:
            return super().get_lr()
        last = self._schedule_phases[-1]
        for group in self.optimizer.param_groups:
            if self.cycle_momentum and self.use_beta1:
                group["betas"] = (group[last["end_momentum"]], *group["betas"][1:])
        return [group[last["end_lr"]] for group in self.optimizer.param_groups]


class ClosedFormLR(LRScheduler):
    """An LR (and optionally beta1) given in closed form by the step number since the schedule began, so a
    resumed run rebuilds exactly the same values. beta1 is set on every group, as OneCycleLR does."""

    def __init__(
        self,
        optimizer: Optimizer,
        lr_at: Callable[[int], float],
        beta1_at: Callable[[int], float | None],
        reference_lr: float,
    ):
        self._lr_at, self._beta1_at, self._reference_lr = lr_at, beta1_at, reference_lr
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        beta1 = self._beta1_at(self.last_epoch)
        if beta1 is not None:
            for group in self.optimizer.param_groups:
                group["betas"] = (beta1, *group["betas"][1:])
        factor = self._lr_at(self.last_epoch) / self._reference_lr
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The position only: the curve is rebuilt from the schedule spec."""
        return {k: v for k, v in super().state_dict().items() if k not in ("_lr_at", "_beta1_at", "_reference_lr")}


def build_scheduler(optimizer: Optimizer, spec: dict[str, Any]) -> LRScheduler:
    if spec["kind"] == "onecycle":
        return OpenEndedOneCycleLR(
            optimizer,
            max_lr=[spec["max_lr"] * group.get("lr_scale", 1.0) for group in optimizer.param_groups],
            total_steps=spec["total_steps"],
            pct_start=spec.get("pct_start", PCT_START),
            anneal_strategy="cos",
            div_factor=DIV_FACTOR,
            final_div_factor=FINAL_DIV_FACTOR,
            base_momentum=BASE_MOMENTUM,
            max_momentum=MAX_MOMENTUM,
        )
    if spec["kind"] == "continuation":
        reference, lr_at, beta1_at = (
            spec["peak_lr"],
            (lambda s: continuation_lr(spec, s)),
            (lambda s: continuation_beta1(spec, s)),
        )
    elif spec["kind"] == "constant":
        reference, lr_at, beta1_at = spec["lr"], (lambda _: spec["lr"]), (lambda _: None)
    else:
        raise ValueError(f"unknown schedule kind {spec['kind']!r}")
    for group in optimizer.param_groups:
        group["lr"] = reference * group.get("lr_scale", 1.0)
        group.pop("initial_lr", None)
    return ClosedFormLR(optimizer, lr_at, beta1_at, reference)


def schedule_end_step(spec: dict[str, Any]) -> int:
    """Global optimizer step at which the schedule is used up."""
    return spec["start_step"] + spec["total_steps"]


def warmup_end_step(spec: dict[str, Any]) -> int:
    if spec["kind"] == "onecycle":
        return spec["start_step"] + int(spec.get("pct_start", PCT_START) * spec["total_steps"])
    return spec["start_step"] + spec.get("warmup_steps", 0)


PEAK_KEY = {"onecycle": "max_lr", "continuation": "peak_lr", "constant": "lr"}


def peak_lr(spec: dict[str, Any]) -> float:
    return spec[PEAK_KEY[spec["kind"]]]


def final_lr(spec: dict[str, Any]) -> float:
    """The LR of the schedule's last step. Past it, the optimizer may hold another value (OneCycleLR's
    formula runs on after its last step), which fashionrec's own plans never use."""
    if spec["kind"] == "onecycle":
        return spec["max_lr"] / (DIV_FACTOR * FINAL_DIV_FACTOR)
    return spec["end_lr"] if spec["kind"] == "continuation" else spec["lr"]


def current_lr(optimizer: Optimizer) -> float:
    """The first group's LR: the whole model's, or the heads' (at the --lr peak) when parts have their own."""
    return float(optimizer.param_groups[0]["lr"])


def current_beta1(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["betas"][0])


def micro_batches(samples: int, batch: int) -> int:
    return math.ceil(samples / batch) if samples > 0 else 0


def steps_per_epoch(samples: int, batch: int, accumulation: int, full_groups: bool = False) -> int:
    """Optimizer steps for `samples` samples: the last, partial accumulation group still steps, unless the
    run steps on `full_groups` only (its leftover micro-batches go into the next epoch's first step)."""
    count = micro_batches(samples, batch)
    return count // accumulation if full_groups else math.ceil(count / accumulation)


def remaining_steps(cfg: TrainConfig, rank_samples: int, epochs_done: int, samples_in_epoch: int) -> int:
    """Optimizer steps from a position (epochs done + samples into the next epoch) to the end of the run."""
    full = full_groups_only(cfg.preset)
    per_epoch = steps_per_epoch(rank_samples, cfg.batch, cfg.gradient_accumulation, full)
    partial = (
        steps_per_epoch(rank_samples - samples_in_epoch, cfg.batch, cfg.gradient_accumulation, full)
        if samples_in_epoch
        else 0
    )
    full_epochs = cfg.epochs - epochs_done - (1 if samples_in_epoch else 0)
    return partial + max(full_epochs, 0) * per_epoch


def their_onecycle_steps(epochs: int, rank_samples: int, batch: int, accumulation: int) -> int:
    """The original system's OneCycleLR size, `epochs * len(loader) // ga`: at least the full groups its
    loop steps on (a leftover micro-batch per epoch can leave a few steps unused)."""
    return epochs * micro_batches(rank_samples, batch) // accumulation


def first_schedule(cfg: TrainConfig, rank_samples: int) -> dict[str, Any]:
    """The OneCycleLR of a new run: sized to its steps, or as the original system sized it for its preset."""
    if full_groups_only(cfg.preset):
        total = their_onecycle_steps(cfg.epochs, rank_samples, cfg.batch, cfg.gradient_accumulation)
    else:
        total = remaining_steps(cfg, rank_samples, 0, 0)
    return onecycle_spec(cfg.lr, total)
