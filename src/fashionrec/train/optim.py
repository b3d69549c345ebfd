"""The AdamW optimizer, with one peak learning rate per part when asked.

By default one parameter group for the whole model, exactly as the original system built it, so its
checkpoints' optimizer states load. With `--backbone-lr` or `--text-lr` there are three groups, in this
order: the new heads (peak `--lr`), the image backbone, the text model (BERT). Each group carries its
peak as a multiple of `--lr` (`lr_scale`), and the schedule (schedule.py) scales its curve by it, so
every group follows the same one-cycle shape to its own peak, and a resume that re-plans the schedule
keeps the ratios. The groups and their scales travel in the optimizer's state dict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fashionrec.errors import UserError
from fashionrec.train.params import TrainConfig

ADAMW_LR = 4e-4  # the optimizer's own LR; the schedule sets the LR actually used, as in the original system
BETAS = (0.9, 0.999)


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group (the default), or heads / backbone / text with their `lr_scale`."""
    if cfg.backbone_lr is None and cfg.text_lr is None:
        return [{"params": list(model.parameters())}]
    for flag, value in (("--lr", cfg.lr), ("--backbone-lr", cfg.backbone_lr), ("--text-lr", cfg.text_lr)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} must be a positive learning rate, got {value}")
    backbone = list(model.backbone.parameters())
    text = list(model.reference.bert.parameters())
    pretrained = {id(p) for p in backbone + text}
    heads = [p for p in model.parameters() if id(p) not in pretrained]
    return [
        {"params": heads, "name": "heads", "lr_scale": 1.0},
        {"params": backbone, "name": "backbone", "lr_scale": (cfg.backbone_lr or cfg.lr) / cfg.lr},
        {"params": text, "name": "text", "lr_scale": (cfg.text_lr or cfg.lr) / cfg.lr},
    ]


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
