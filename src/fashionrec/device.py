"""The one place a `--device` name becomes a torch device (train, evaluate, index, recommend, serve)."""

from __future__ import annotations

import torch

from fashionrec.errors import UserError
from fashionrec.options import DEFAULT_DEVICE


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is this process's GPU when CUDA works, else the CPU; a CUDA device on a machine without
    CUDA is a user error, not a crash at the first tensor."""
    if name == DEFAULT_DEVICE:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def set_threads(threads: int | None) -> int:
    """Apply `--threads` (None keeps torch's default) and return the count in force."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
