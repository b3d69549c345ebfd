"""The AdamW optimizer, with one peak learning rate per part when asked.

A model family names its pretrained parts (`ModelFamily.parts`: "backbone", the image encoder, and "text",
the text encoder); every other parameter is a "heads" parameter, at `--lr`. `--backbone-lr` and `--text-lr`
give a part its own peak. A part given no peak trains at `--lr`, or, in families whose parts are frozen by
default (CLIP), does not train at all: it is frozen (no gradients, kept in eval mode), and the trainer may
cache its outputs (train/features.py).

Groups: FashionVLP without part LRs has one parameter group for the whole model, exactly as the original
system built it, so its checkpoints' optimizer states load. Otherwise one group per trained part, in this
order: heads (omitted when the model has none), backbone, text. Each group carries its peak as a multiple
of `--lr` (`lr_scale`), and the schedule (schedule.py) scales its curve by it, so every group follows the
same one-cycle shape to its own peak, and a resume that re-plans the schedule keeps the ratios. The groups
and their scales travel in the optimizer's state dict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fashionrec.errors import UserError
from fashionrec.model.registry import PART_FLAGS, family_of
from fashionrec.train.params import TrainConfig

ADAMW_LR = 4e-4  # the optimizer's own LR; the schedule sets the LR actually used, as in the original system
BETAS = (0.9, 0.999)


def part_lrs(cfg: TrainConfig) -> dict[str, float | None]:
    """Each part's own peak learning rate, None where the flag was not given."""
    return {"backbone": cfg.backbone_lr, "text": cfg.text_lr}


def frozen_parts(model: nn.Module, cfg: TrainConfig) -> set[str]:
    """The parts that do not train in this run: those given no LR of their own, in a family that freezes them.
    A run in which nothing would train is a user error (raised before any data is read or feature computed)."""
    family = family_of(model.config.preset)
    if not family.frozen_by_default:
        return set()
    lrs = part_lrs(cfg)
    parts = family.parts(model)
    frozen = {name for name in parts if lrs.get(name) is None}
    still = {id(p) for name in frozen for p in parts[name]}
    if not any(p.requires_grad and id(p) not in still for p in model.parameters()):
        flags = " and/or ".join(PART_FLAGS[name] for name in parts)
        raise UserError(
            f"--preset {model.config.preset} has nothing to train here: give {flags} to fine-tune its parts"
        )
    return frozen


def freeze(model: nn.Module, parts: set[str]) -> None:
    """No gradients for `parts`; the model keeps them in eval mode (`frozen_parts`) whatever `train()` says."""
    for name, params in family_of(model.config.preset).parts(model).items():
        for p in params:
            p.requires_grad_(name not in parts)
    model.frozen_parts = set(parts)
    model.train(model.training)


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group (FashionVLP's default), or heads and the trained parts with their `lr_scale`."""
    for flag, value in (("--lr", cfg.lr), ("--backbone-lr", cfg.backbone_lr), ("--text-lr", cfg.text_lr)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} must be a positive learning rate, got {value}")
    family = family_of(model.config.preset)
    lrs = part_lrs(cfg)
    if not family.frozen_by_default and all(lr is None for lr in lrs.values()):
        return [{"params": list(model.parameters())}]
    parts = family.parts(model)
    in_parts = {id(p) for params in parts.values() for p in params}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in in_parts]
    groups = [{"params": heads, "name": "heads", "lr_scale": 1.0}] if heads else []
    for name, params in parts.items():
        trained = [p for p in params if p.requires_grad]
        if trained:
            groups.append({"params": trained, "name": name, "lr_scale": (lrs.get(name) or cfg.lr) / cfg.lr})
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, cfg), lr=ADAMW_LR, betas=BETAS, weight_decay=cfg.weight_decay)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimizer state; one saved with other parameter groups is a clear error, not torch's."""
    saved = [g.get("name", "all") for g in state.get("param_groups", [])]
    built = [g.get("name", "all") for g in optimizer.param_groups]
    if saved != built:
        raise UserError(
            f"the checkpoint's optimizer has parameter groups {saved}, this run's has {built}: "
            "--backbone-lr and --text-lr must be given (or left out) as when the checkpoint was trained"
        )
    optimizer.load_state_dict(state)
