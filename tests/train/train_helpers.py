"""Helpers for the train tests: run the CLI as a user would, compare checkpoints bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """`python -m fashionrec ARGS` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fashionrec", *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def final_checkpoint(directory: Path, prefix: str = "") -> Path:
    """The one final checkpoint in `directory` (of the resumed run's, when `prefix` is "resumed")."""
    finals = sorted(directory.glob(f"final_{prefix}*.pt"))
    assert len(finals) == 1, f"expected one final checkpoint in {directory}: {finals}"
    return finals[0]


def assert_same_training(a: Path, b: Path) -> None:
    """Bit-identical weights, optimizer state and histories (torch.equal on every tensor)."""
    ca, cb = load(a), load(b)
    assert ca["model_state_dict"].keys() == cb["model_state_dict"].keys()
    for key, value in ca["model_state_dict"].items():
        assert torch.equal(value, cb["model_state_dict"][key]), f"weights differ at {key}"
    sa, sb = ca["optimizer_state_dict"], cb["optimizer_state_dict"]
    assert sa["state"].keys() == sb["state"].keys()
    for pid, state in sa["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["state"][pid][name])), (
                f"optimizer {pid}.{name}"
            )
    assert sa["param_groups"] == sb["param_groups"]
    for key in ("epoch", "train_losses", "val_recalls", "val_recalls_at_50", "global_step", "best_recall"):
        assert ca[key] == cb[key], key
