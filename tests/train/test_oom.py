"""A CUDA out-of-memory error halves the micro-batch, doubles accumulation and carries on."""

from __future__ import annotations

import math

import torch

from fashionrec.model import create_model
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.train.data import build_cache, load_training_data
from fashionrec.train.params import TrainConfig
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer


def test_oom_halves_the_micro_batch_with_the_same_effective_batch(small_data, cache_dir, monkeypatch):
    cfg = TrainConfig(
        path_file=str(small_data),
        path_folder=str(small_data / "images"),
        categories=("dress",),
        preset="tiny",
        batch=8,
        gradient_accumulation=2,
        num_workers=0,
        cache_dir=str(cache_dir),
        epochs=1,
        seed=3,
    )
    data = load_training_data(cfg)
    model = create_model("tiny", data.train_texts(), pretrained=False)
    cache = build_cache(cfg, data, model.config.image_size)
    messages: list[str] = []
    trainer = Trainer(cfg, model, data, cache, torch.device("cpu"), None, onecycle_spec(cfg.lr, 100), messages.append)

    seen_sizes: list[int] = []
    real_forward = FashionVLP.forward

    def forward_that_fits_only_4(self, batch):
        size = len(batch["index"])
        if size > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen_sizes.append(size)
        return real_forward(self, batch)

    monkeypatch.setattr(FashionVLP, "forward", forward_that_fits_only_4)
    trainer.train_epoch()

    n = len(data.triplets())
    p = trainer.progress
    assert p.micro_splits == 2
    assert p.samples_in_epoch == n and sum(seen_sizes) == n  # every sample trained exactly once
    assert p.global_step == math.ceil(math.ceil(n / 8) / 2)  # same optimizer steps as without the error
    assert max(seen_sizes) == 4
    assert any("CUDA out of memory at micro-batch 8: continuing with micro-batch 4" in m for m in messages)
    assert math.isfinite(p.epoch_loss_sum)
