"""Resume is exact: stopped, killed or re-planned runs continue to the same bits as an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import assert_same_training, final_checkpoint, load, run_cli, run_main

from fashionrec.cli.main import main

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

EPOCHS = "3"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_args) -> Path:
    """One uninterrupted 3-epoch run (in-process): the bits every interrupted run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["train", *train_args, "--epochs", EPOCHS, "--output-dir", str(out)]) == 0
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stop_after_k_epochs_then_resume_is_bit_identical(reference, train_args, tmp_path, capsys):
    args = ["train", *train_args, "--epochs", EPOCHS, "--stop-after-epochs", "1", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    start = tmp_path / next(p.name for p in tmp_path.glob("optimized_model_epoch_1_recall_*.pt"))
    before = sha256(start)
    # Flags equal to the checkpoint's own (the LR here) change nothing.
    code, out, _ = run_main(
        capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", EPOCHS, "--lr", "3e-4"
    )
    assert code == 0 and "resuming from" in out and "previous best R@10" in out and "LR" in out
    assert_same_training(final_checkpoint(reference), final_checkpoint(tmp_path))
    assert sha256(start) == before  # the starting checkpoint is never rewritten
    names = {p.name for p in tmp_path.glob("*.pt")}
    assert any(n.startswith("resumed_model_epoch_3_recall_") for n in names)
    assert any(n.startswith("final_resumed_model_epoch_3_recall_") for n in names)
    assert any(
        n.startswith("best_resumed_model_recall_") or n.startswith("best_optimized_model_recall_") for n in names
    )


def test_in_epoch_saves_do_not_perturb_training_and_mid_epoch_resume_is_exact(reference, train_args, tmp_path):
    saved = tmp_path / "saved"
    assert main(["train", *train_args, "--epochs", EPOCHS, "--save-every-steps", "2", "--output-dir", str(saved)]) == 0
    assert_same_training(final_checkpoint(reference), final_checkpoint(saved))
    step_file = sorted(saved.glob("optimized_model_epoch_2_step_*.pt"))[0]
    ckpt = load(step_file)
    assert ckpt["samples_in_epoch"] > 0 and ckpt["epoch"] == 1
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(step_file, resumed / step_file.name)
    assert main(["resume", "--checkpoint", str(resumed), *train_args]) == 0  # folder mode; omitted flags kept
    assert_same_training(final_checkpoint(reference), final_checkpoint(resumed))


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fashionrec", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _interrupt_when(proc: subprocess.Popen, out: Path, condition, sig=signal.SIGKILL, timeout: float = 300.0) -> bool:
    """Send `sig` as soon as `condition(out)` holds and wait for the process; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition(out):
            proc.send_signal(sig)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("run neither finished nor reached the interruption point")


def _new(pattern: str, out: Path, count: int = 1):
    """Condition: `count` files matching `pattern` appeared that were not there when it was made."""
    before = {p.name for p in out.glob(pattern)}
    return lambda d: len({p.name for p in d.glob(pattern)} - before) >= count


def test_sigkill_at_several_moments_then_resume_is_bit_identical(reference, train_args, tmp_path):
    """Killed mid-epoch, mid-checkpoint-write and right after an epoch's save, stopped by SIGTERM in
    between, each time resumed from the folder: the end result has the uninterrupted run's bits."""
    every = ["--save-every-steps", "2"]
    first = _spawn(["train", *train_args, "--epochs", EPOCHS, *every, "--output-dir", str(tmp_path)])
    assert _interrupt_when(first, tmp_path, _new("*_step_*.pt", tmp_path))  # mid-epoch
    assert first.returncode == -signal.SIGKILL
    moments = [
        (lambda: lambda d: any(d.glob(".*.tmp")), signal.SIGKILL),  # in the middle of writing a checkpoint
        (lambda: _new("resumed_model_epoch_*_step_*.pt", tmp_path, 2), signal.SIGTERM),  # a pre-emption notice
        (lambda: _new("resumed_model_epoch_*_recall_*.pt", tmp_path), signal.SIGKILL),  # just after an epoch's save
    ]
    interrupted = 1
    for make_condition, sig in moments:
        condition = make_condition()  # what counts as new is judged from this resume's start
        proc = _spawn(["resume", "--checkpoint", str(tmp_path), *train_args])
        if _interrupt_when(proc, tmp_path, condition, sig):
            interrupted += 1
            assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    run_cli("resume", "--checkpoint", str(tmp_path), *train_args)
    assert interrupted >= 3
    assert_same_training(final_checkpoint(reference), final_checkpoint(tmp_path, "resumed"))
    assert not list(tmp_path.glob(".*.tmp"))  # half-written files of killed saves are cleaned up
