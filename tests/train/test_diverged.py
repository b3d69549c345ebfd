"""A run whose loss or weights become NaN stops with a clear message and saves nothing new."""

from __future__ import annotations

import math

import pytest
import torch

from fashionrec.model import create_model
from fashionrec.train.checkpoint import TRAIN_PREFIX, CheckpointManager
from fashionrec.train.data import build_cache, load_training_data
from fashionrec.train.params import TrainConfig
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Diverged, Trainer


@pytest.fixture
def trainer(small_data, cache_dir, tmp_path) -> Trainer:
    cfg = TrainConfig(
        path_file=str(small_data), path_folder=str(small_data / "images"), categories=("dress",), preset="tiny",
        batch=8, gradient_accumulation=1, num_workers=0, cache_dir=str(cache_dir), epochs=2, seed=3,
        output_dir=str(tmp_path),
    )  # fmt: skip
    data = load_training_data(cfg)
    model = create_model("tiny", data.train_texts(), pretrained=False)
    cache = build_cache(cfg, data, model.config.preprocess_config())
    manager = CheckpointManager(tmp_path, TRAIN_PREFIX)
    return Trainer(cfg, model, data, cache, torch.device("cpu"), manager, onecycle_spec(cfg.lr, 100), lambda _: None)


def test_a_nan_loss_stops_the_run_before_anything_is_saved(trainer, tmp_path):
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(Diverged, match=r"the loss became nan in epoch 1 at step 1: stopping without saving"):
        trainer.fit()
    assert list(tmp_path.glob("*.pt")) == []


@pytest.mark.slow
def test_weights_that_became_infinite_are_never_saved(trainer, tmp_path, monkeypatch):
    """As with fp16, where the grad scaler skips inf steps, the loss of the epoch stays finite."""
    real_step = trainer.step
    steps = math.ceil(trainer.sampler.num_samples / trainer.cfg.batch)

    def step_then_blow_up(group):
        losses = real_step(group)
        if trainer.progress.step_in_epoch + 1 == steps:  # the epoch's last step
            with torch.no_grad():
                next(trainer.model.parameters()).view(-1)[0] = float("inf")
        return losses

    monkeypatch.setattr(trainer, "step", step_then_blow_up)
    with pytest.raises(Diverged, match="weights became NaN or infinite in epoch 1"):
        trainer.fit()
    assert list(tmp_path.glob("*.pt")) == []
