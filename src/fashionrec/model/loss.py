"""Batch-classification (InfoNCE) loss: each reference must pick its own target among the batch's targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(
    f_ref: torch.Tensor, f_tar: torch.Tensor, temperature: float, target_offset: int = 0
) -> torch.Tensor:
    """`f_ref` [B, d] and `f_tar` [N, d], both L2-normalised; query i's positive is target i + offset.
    With all ranks' targets gathered (N = world * B), `target_offset` is this rank's first row."""
    logits = f_ref @ f_tar.t() / temperature
    labels = torch.arange(f_ref.shape[0], device=f_ref.device) + target_offset
    return F.cross_entropy(logits.float(), labels)
