"""Helpers for the train tests: run the CLI as a user would, compare checkpoints bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fashionrec.cli.main import main
from fashionrec.model import checkpoint_format


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """`python -m fashionrec ARGS` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fashionrec", *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`fashionrec ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def load(path: Path) -> dict:
    """A checkpoint's content, read as fashionrec reads it (digest verified)."""
    return dict(checkpoint_format.read(path).data)


def save(path: Path, data: dict) -> None:
    """Write an edited checkpoint as fashionrec would (a fresh digest over the edited content)."""
    checkpoint_format.write(path, {k: v for k, v in data.items() if k != checkpoint_format.DIGEST_KEY})


def final_checkpoint(directory: Path, prefix: str = "") -> Path:
    """The one final checkpoint in `directory` (of the resumed run's, when `prefix` is "resumed")."""
    finals = sorted(directory.glob(f"final_{prefix}*.pt"))
    assert len(finals) == 1, f"expected one final checkpoint in {directory}: {finals}"
    return finals[0]


def assert_same_training(a: Path, b: Path) -> None:
    """Bit-identical weights, optimizer state and histories (torch.equal on every tensor)."""
    assert checkpoint_format.differences(checkpoint_format.read(a), checkpoint_format.read(b)) == []
