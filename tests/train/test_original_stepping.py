"""The original system's stepping rule and schedule, as fashionrec runs them for the `original` preset: the
saved OneCycleLR continued (its total, its position), optimizer steps on full accumulation groups only, and
an epoch's leftover micro-batch carried into the next epoch's first step; a stop at an epoch's end saves
that pending gradient, so the resumed run is bit-identical to the uninterrupted one.

The runs are real `Trainer` runs with real checkpoints, resumed as `fashionrec resume` plans it
(`plan_resume`, `Trainer.load_state`). The stepping rule and the schedule belong to the trainer and do not
depend on the network, so a tiny network stands in for the 150 M-parameter one (whose own resumes run in
test_original_resume.py) and keeps 20+ optimizer steps within seconds.

The reference is an independent transcription of their `resume_training.py` loop (AdamW and OneCycleLR built
for its flags, the saved optimizer and scheduler states loaded over them, `(batch_idx + 1) % ga == 0`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR
from torch.optim.optimizer import register_optimizer_step_pre_hook
from train_helpers import assert_same_training, final_checkpoint, legacy_copy, load, tiny_model

from fashionrec.model import checkpoint_format
from fashionrec.train.checkpoint import RESUME_PREFIX, TRAIN_PREFIX, CheckpointManager
from fashionrec.train.data import build_cache, load_training_data
from fashionrec.train.params import TrainConfig
from fashionrec.train.resume_plan import Saved, plan_resume, resume_settings
from fashionrec.train.schedule import first_schedule
from fashionrec.train.trainer import Trainer, TrainingStopped

pytestmark = pytest.mark.slow  # about ten small training runs

TRIPLETS, BATCH, GA, EPOCHS = 18, 2, 2, 6  # 9 micro-batches an epoch: 4 steps and one micro-batch left over
STOP_AFTER = 3
CPU = torch.device("cpu")


def quiet(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def config(small_data: Path, cache_dir: Path, tmp_path_factory) -> TrainConfig:
    """The first 18 dress triplets in their single-file layout; the `original` preset's settings."""
    legacy = legacy_copy(small_data, tmp_path_factory.mktemp("their_layout") / "data", queries=TRIPLETS)
    return TrainConfig(
        path_file=str(legacy), path_folder=str(small_data / "images"), preset="original", batch=BATCH,
        gradient_accumulation=GA, epochs=EPOCHS, num_workers=0, cache_dir=str(cache_dir), seed=3,
    )  # fmt: skip


def make_trainer(cfg: TrainConfig, model, out: Path | None, prefix: str, schedule: dict, start: Path | None = None):
    data = load_training_data(cfg, quiet)
    manager = CheckpointManager(out, prefix, protected=start) if out is not None else None
    return Trainer(
        cfg, model, data, build_cache(cfg, data, model.config.preprocess_config()), CPU, manager, schedule, quiet
    )


def resumed(start: Path, out: Path | None, **flags) -> Trainer:
    """What `fashionrec resume --checkpoint START` builds: settings, plan, and the state loaded."""
    ckpt = checkpoint_format.read(start)
    saved = Saved.from_checkpoint(ckpt)
    cfg, changed = resume_settings(saved, flags, str(out))
    plan = plan_resume(saved, cfg, changed, 1, TRIPLETS, None)
    trainer = make_trainer(cfg, ckpt.build_model(), out, RESUME_PREFIX, plan.schedule, ckpt.path)
    trainer.load_state(ckpt, plan.keep_schedule, plan.samples_in_epoch)
    return trainer


@contextlib.contextmanager
def optimizer_steps() -> Iterator[list[tuple[float, float, float]]]:
    """(LR, beta1, beta2) in force at each optimizer step taken inside the block."""
    used: list[tuple[float, float, float]] = []

    def record(optimizer, _args, _kwargs):
        group = optimizer.param_groups[0]
        used.append((group["lr"], *group["betas"]))

    handle = register_optimizer_step_pre_hook(record)
    try:
        yield used
    finally:
        handle.remove()


def their_resume_schedule(ckpt: dict, epochs: int, micro_batches: int, ga: int) -> list[tuple[float, float, float]]:
    """Their resume_training.py without the model: AdamW(lr 4e-4, betas (0.9, 0.999), weight decay 0.01),
    OneCycleLR(max_lr 3e-4, total epochs * len(loader) // ga, pct_start 0.1, cos), then the checkpoint's
    optimizer state and scheduler state loaded over them; for each epoch from the checkpoint's, a step after
    every micro-batch with (batch_idx + 1) % ga == 0, gradients never zeroed at an epoch's start."""
    saved_groups = ckpt["optimizer_state_dict"]["param_groups"]
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in saved_groups[0]["params"]]
    optimizer = torch.optim.AdamW(params, lr=4e-4, betas=(0.9, 0.999), weight_decay=0.01)
    scheduler = OneCycleLR(
        optimizer, max_lr=3e-4, total_steps=epochs * micro_batches // ga, pct_start=0.1, anneal_strategy="cos"
    )
    optimizer.load_state_dict({"state": {}, "param_groups": saved_groups})
    scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    used = []
    for _epoch in range(ckpt["epoch"], epochs):
        for batch_idx in range(micro_batches):
            if (batch_idx + 1) % ga == 0:
                group = optimizer.param_groups[0]
                used.append((group["lr"], *group["betas"]))
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
    return used


@pytest.fixture(scope="module")
def base(config, tmp_path_factory) -> Path:
    """A new `original`-preset run stopped after its first epoch: its OneCycleLR sized as theirs."""
    out = tmp_path_factory.mktemp("base")
    cfg = TrainConfig.from_dict({**config.to_dict(), "stop_after_epochs": 1})
    schedule = first_schedule(cfg, TRIPLETS)
    assert schedule["total_steps"] == EPOCHS * math.ceil(TRIPLETS / BATCH) // GA == 27
    make_trainer(cfg, tiny_model(cfg), out, TRAIN_PREFIX, schedule).fit()
    (path,) = out.glob("optimized_model_epoch_1_recall_*.pt")
    return path


@pytest.fixture(scope="module")
def uninterrupted(base, tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("uninterrupted")
    with optimizer_steps() as used:
        resumed(base, out).fit()
    return out, used


@pytest.fixture(scope="module")
def stopped_and_resumed(base, tmp_path_factory) -> tuple[Path, Path, list]:
    """Resumed from the base, stopped at the end of epoch 3 (a step checkpoint after every step), then resumed
    from that epoch's checkpoint to the end."""
    first, second = tmp_path_factory.mktemp("stopped"), tmp_path_factory.mktemp("resumed")
    with optimizer_steps() as used:
        resumed(base, first, stop_after_epochs=STOP_AFTER, save_every_steps=1).fit()
        (middle,) = first.glob(f"resumed_model_epoch_{STOP_AFTER}_recall_*.pt")
        resumed(middle, second).fit()
    return first, second, used


def test_lr_and_betas_at_every_step_follow_their_resume_loop(base, uninterrupted, stopped_and_resumed):
    expected = their_resume_schedule(load(base), EPOCHS, math.ceil(TRIPLETS / BATCH), GA)
    assert len(expected) == (EPOCHS - 1) * (math.ceil(TRIPLETS / BATCH) // GA) == 20
    assert stopped_and_resumed[2] == expected  # exactly: the same OneCycleLR arithmetic from the same state
    assert uninterrupted[1] == expected
    # Past the peak (epoch 1): the LR anneals while beta1 climbs back towards 0.95, step by step.
    lrs, beta1s = [lr for lr, *_ in expected], [b for _, b, _ in expected]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert all(a < b for a, b in zip(beta1s, beta1s[1:], strict=False)) and 0.85 < beta1s[0] < beta1s[-1] < 0.95
    assert final_lr_of(uninterrupted[0]) < lrs[-1]


def final_lr_of(folder: Path) -> float:
    return load(final_checkpoint(folder, "resumed"))["optimizer_state_dict"]["param_groups"][0]["lr"]


def test_only_epoch_end_checkpoints_hold_the_leftover_gradient(base, stopped_and_resumed):
    first = stopped_and_resumed[0]
    ends = sorted(first.glob("resumed_model_epoch_*_recall_*.pt"))
    steps = sorted(first.glob("resumed_model_epoch_*_step_*.pt"))
    assert len(ends) == STOP_AFTER - 1 and len(steps) == (STOP_AFTER - 1) * 4
    for path in [base, *ends]:
        pending = checkpoint_format.read(path).pending_gradients
        assert pending and any(bool(g.abs().sum() > 0) for g in pending.values())
        assert load(path)["global_step"] % 4 == 0  # full groups only: 4 steps an epoch
    assert all(not checkpoint_format.read(path).pending_gradients for path in steps)


def test_stop_and_resume_is_bit_identical_to_the_uninterrupted_run(uninterrupted, stopped_and_resumed):
    a, b = final_checkpoint(uninterrupted[0], "resumed"), final_checkpoint(stopped_and_resumed[1], "resumed")
    assert_same_training(a, b)
    assert checkpoint_format.read(a).pending_gradients  # the last epoch's leftover, kept for a later resume
    assert load(a)["global_step"] == EPOCHS * 4


def first_step_moments(start: Path, drop_pending: bool) -> dict[str, torch.Tensor]:
    """AdamW's first moments after the first step of a resume from `start` (optionally without the
    checkpoint's pending gradient), stopped there as a SIGTERM would stop it."""
    trainer = resumed(start, None)
    if drop_pending:
        trainer.optimizer.zero_grad(set_to_none=True)
    handle = trainer.optimizer.register_step_post_hook(lambda *_: setattr(trainer, "stop_requested", True))
    with pytest.raises(TrainingStopped):
        trainer.fit()
    handle.remove()
    params = dict(trainer.model.named_parameters())
    return {name: trainer.optimizer.state[p]["exp_avg"].clone() for name, p in params.items() if p.grad is None}


def test_the_leftover_gradient_reaches_the_next_epochs_first_step_after_a_resume(stopped_and_resumed):
    """exp_avg' = beta1 exp_avg + (1 - beta1) g: with and without the carried gradient P the first step's
    fresh gradients are the same, so the moments differ by (1 - beta1) P."""
    (middle,) = stopped_and_resumed[0].glob(f"resumed_model_epoch_{STOP_AFTER}_recall_*.pt")
    ckpt = checkpoint_format.read(middle)
    pending, beta1 = ckpt.pending_gradients, ckpt.optimizer_state["param_groups"][0]["betas"][0]
    assert beta1 == stopped_and_resumed[2][(STOP_AFTER - 1) * 4][1]  # the beta1 of that step
    with_it, without = first_step_moments(middle, False), first_step_moments(middle, True)
    assert set(pending) <= set(with_it)
    for name, grad in pending.items():
        torch.testing.assert_close(with_it[name] - without[name], (1 - beta1) * grad, rtol=1e-4, atol=1e-7)
    assert any(not torch.equal(with_it[n], without[n]) for n in pending)
