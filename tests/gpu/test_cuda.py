"""CUDA-only checks: exact resume after SIGKILL with --deterministic, bf16 autocast, fp16 with a GradScaler,
--compile, and the out-of-memory fallback provoked by a real allocation failure under a memory cap.

Run them with `scripts/gpu_check.sh` (or `pytest -m gpu tests/gpu`). Where torch.cuda.is_available() is
False every test here is skipped with that reason; nothing else skips them."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import (
    assert_same_training,
    final_checkpoint,
    first_batch,
    make_trainer,
    run_cli,
    small_config,
    small_run_args,
    tiny_model,
)

from fashionrec.train.trainer import amp_settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
]


def cli_args(data: Path, cache: Path, *extra: str) -> list[str]:
    return [*small_run_args(data, cache), "--device", "cuda", *extra]


def kill_after_first_step_checkpoint(args: list[str], out: Path, timeout: float = 300.0) -> None:
    """Start `fashionrec train`, SIGKILL it as soon as its first in-epoch checkpoint exists."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fashionrec", *args], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not any(out.glob("*_step_*.pt")):
        assert proc.poll() is None, "the run ended before its first step checkpoint"
        assert time.monotonic() < deadline, "no step checkpoint in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", ["plain", "accumulate-negatives"])
def test_sigkill_then_resume_is_bit_exact_on_cuda_with_deterministic_kernels(
    small_data, cache_dir, tmp_path, accumulation
):
    extra = ["--deterministic", "--epochs", "2", *(["--accumulate-negatives"] if accumulation != "plain" else [])]
    args = cli_args(small_data, cache_dir, *extra)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run_cli("train", *args, "--output-dir", str(reference))
    kill_after_first_step_checkpoint(["train", *args, "--save-every-steps", "2", "--output-dir", str(killed)], killed)
    run_cli("resume", "--checkpoint", str(killed), *args)
    assert_same_training(final_checkpoint(reference), final_checkpoint(killed, "resumed"))


def test_bf16_autocast_trains(small_data, cache_dir):
    assert torch.cuda.is_bf16_supported(), "this check expects a GPU with bf16 (Ampere or newer)"
    cfg = small_config(small_data, cache_dir, mixed_precision=True)
    trainer = make_trainer(cfg, tiny_model(cfg), device="cuda")
    assert (trainer.amp_dtype, trainer.scaler.is_enabled()) == (torch.bfloat16, False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_epoch()
    assert math.isfinite(trainer.progress.epoch_loss_sum) and trainer.progress.global_step > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


@pytest.mark.parametrize("accumulate_negatives", [False, True])
def test_fp16_with_grad_scaler_trains(small_data, cache_dir, accumulate_negatives):
    """The path of GPUs without bf16 (amp_settings picks it there), forced here."""
    assert not amp_settings(torch.device("cpu"), True).scaler  # the CPU never takes it
    cfg = small_config(small_data, cache_dir, mixed_precision=True, accumulate_negatives=accumulate_negatives)
    trainer = make_trainer(cfg, tiny_model(cfg), device="cuda")
    trainer.amp_dtype, trainer.scaler = torch.float16, torch.amp.GradScaler("cuda")
    trainer.train_epoch()
    assert math.isfinite(trainer.progress.epoch_loss_sum)
    assert 0 < trainer.scaler.get_scale() < 2.0**16  # started at 2**16, backed off on overflowing steps
    assert trainer.optimizer.state, "no optimizer step was taken (every step overflowed)"


def test_compile_trains_like_eager(small_data, cache_dir):
    losses = {}
    model = tiny_model(small_config(small_data, cache_dir), dropout=0.0)
    for compiled in (False, True):
        trainer = make_trainer(small_config(small_data, cache_dir, compile=compiled), model, device="cuda")
        trainer.train_epoch()
        losses[compiled] = trainer.progress.epoch_loss_sum / trainer.progress.epoch_loss_count
    assert math.isfinite(losses[True])
    assert losses[True] == pytest.approx(losses[False], rel=1e-2)  # other kernels, same training


def step_memory(trainer, group: list) -> tuple[float, int]:
    """(loss, bytes the step allocated above what was allocated before it)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = trainer.step(group)[0]
    torch.cuda.synchronize()
    return loss, torch.cuda.max_memory_allocated() - base


@pytest.mark.parametrize("accumulate_negatives", [False, True])
def test_a_real_oom_under_a_memory_cap_halves_the_micro_batch(small_data, cache_dir, accumulate_negatives):
    """Measure the step's memory at micro-batch 64 and 32, cap the process between the two
    (set_per_process_memory_fraction), and train at 64: CUDA's allocator fails, the step is retried at 32.
    With --accumulate-negatives the loss is the uncapped step's."""
    cfg = small_config(
        small_data, cache_dir, batch=64, gradient_accumulation=1, accumulate_negatives=accumulate_negatives
    )
    model = tiny_model(cfg, dropout=0.0)
    whole = make_trainer(cfg, model, device="cuda")
    group = [first_batch(whole)]
    loss, full = step_memory(whole, group)
    halved = make_trainer(cfg, model, device="cuda")
    halved.progress.micro_splits = 2
    _, half = step_memory(halved, group)
    del whole, halved
    assert full > 1.5 * half, f"the step's memory does not shrink with the micro-batch: {full} vs {half} bytes"

    messages: list[str] = []
    capped = make_trainer(cfg, model, messages.append, device="cuda")
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_allocated() + (full + half) // 2
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        capped_loss = capped.step(group)[0]
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert capped.progress.micro_splits == 2
    assert messages and messages[0].startswith("CUDA out of memory at micro-batch 64: continuing with micro-batch 32")
    if accumulate_negatives:
        assert "the objective is unchanged" in messages[0]
        assert capped_loss == pytest.approx(loss, rel=1e-5)
    else:
        assert "contrasts a query with 31 negatives instead of 63" in messages[0]
