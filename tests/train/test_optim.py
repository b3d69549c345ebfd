"""Learning rates per part: the default single AdamW group as the original system built it, or heads /
backbone / text groups with their own peaks under one schedule, saved and resumed exactly; the parts are
the ones each model family names (the original system's architecture has its own)."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from original_run import SMALL_BERT
from torch.optim.lr_scheduler import OneCycleLR
from train_helpers import (
    assert_same_training,
    final_checkpoint,
    first_batch,
    load,
    make_trainer,
    small_config,
    tiny_model,
)

from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.model import create_model, register
from fashionrec.model.families.fashionvlp import FashionVLPConfig
from fashionrec.model.families.original import OriginalFamily
from fashionrec.train.optim import ADAMW_LR, BETAS, load_optimizer_state
from fashionrec.train.schedule import DIV_FACTOR, build_scheduler, continuation_spec, warmup_end_step

LR, BACKBONE_LR, TEXT_LR = 3e-4, 2e-5, 5e-5


@pytest.fixture(scope="module")
def model(small_data, cache_dir):
    return tiny_model(small_config(small_data, cache_dir))


def test_default_is_the_original_single_group(small_data, cache_dir, model):
    cfg = small_config(small_data, cache_dir)
    trainer = make_trainer(cfg, model)
    original = torch.optim.AdamW(trainer.model.parameters(), lr=ADAMW_LR, betas=BETAS, weight_decay=cfg.weight_decay)
    OneCycleLR(original, max_lr=LR, total_steps=100, pct_start=trainer.schedule["pct_start"], div_factor=DIV_FACTOR)
    assert trainer.optimizer.state_dict()["param_groups"] == original.state_dict()["param_groups"]


def test_parts_get_their_own_peak_under_one_schedule(small_data, cache_dir, model):
    cfg = small_config(small_data, cache_dir, lr=LR, backbone_lr=BACKBONE_LR, text_lr=TEXT_LR)
    trainer = make_trainer(cfg, model)
    groups = trainer.optimizer.param_groups
    assert [g["name"] for g in groups] == ["heads", "backbone", "text"]
    ids = [[id(p) for p in g["params"]] for g in groups]
    assert ids[1] == [id(p) for p in trainer.model.backbone.parameters()]
    assert ids[2] == [id(p) for p in trainer.model.reference.bert.parameters()]
    assert sorted(sum(ids, [])) == sorted(id(p) for p in trainer.model.parameters())  # each exactly once

    peaks = [LR, BACKBONE_LR, TEXT_LR]
    assert [g["lr"] for g in groups] == pytest.approx([p / DIV_FACTOR for p in peaks], rel=1e-9)
    history = []
    for _ in range(warmup_end_step(trainer.schedule) + 5):
        trainer.optimizer.step()
        trainer.scheduler.step()
        history.append([g["lr"] for g in groups])
    top = max(history, key=lambda lrs: lrs[0])
    assert top == pytest.approx(peaks, rel=1e-9)
    assert max(lrs[1] for lrs in history) == top[1] and max(lrs[2] for lrs in history) == top[2]  # same step

    # A re-planned (continuation) schedule scales every group alike: the ratios stay.
    trainer.scheduler = build_scheduler(trainer.optimizer, continuation_spec(1e-4, 2e-4, 5, 20, 0))
    assert [g["lr"] for g in groups] == pytest.approx([p * 1e-4 / LR for p in peaks], rel=1e-9)


def test_optimizer_state_with_other_groups_is_a_clear_error(small_data, cache_dir, model):
    single = make_trainer(small_config(small_data, cache_dir), model)
    parts = make_trainer(small_config(small_data, cache_dir, backbone_lr=BACKBONE_LR), model)
    with pytest.raises(UserError, match=r"parameter groups \['all'\].*\['heads', 'backbone', 'text'\]"):
        load_optimizer_state(parts.optimizer, single.optimizer.state_dict())
    with pytest.raises(UserError, match="--backbone-lr must be a positive"):
        make_trainer(small_config(small_data, cache_dir, backbone_lr=-1.0), model)


@pytest.mark.slow
def test_resume_with_parts_and_accumulated_negatives_is_bit_identical(train_args, tmp_path, capsys):
    """Dropout on: the replayed micro-batches' random streams travel in the checkpoint like the rest."""
    flags = ["--accumulate-negatives", "--backbone-lr", str(BACKBONE_LR), "--text-lr", str(TEXT_LR)]
    reference = tmp_path / "reference"
    args = [*train_args, *flags, "--epochs", "2"]
    assert main(["train", *args, "--save-every-steps", "4", "--output-dir", str(reference)]) == 0
    step_file = sorted(reference.glob("optimized_model_epoch_2_step_*.pt"))[0]
    saved = load(step_file)
    assert [g["name"] for g in saved["optimizer_state_dict"]["param_groups"]] == ["heads", "backbone", "text"]
    assert saved["train_config"]["accumulate_negatives"] is True
    assert saved["train_config"]["backbone_lr"] == BACKBONE_LR

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(step_file, resumed / step_file.name)
    assert main(["resume", "--checkpoint", str(resumed), *train_args]) == 0
    assert_same_training(final_checkpoint(reference), final_checkpoint(resumed))

    capsys.readouterr()
    assert main(["resume", "--checkpoint", str(step_file), *train_args, "--backbone-lr", "1e-3"]) == 2
    assert "--backbone-lr 0.001 contradicts the checkpoint" in capsys.readouterr().err


class SmallOriginal(OriginalFamily):
    """The original system's architecture (the full ResNet-50: its names fix its width) at 32 px with a small
    BERT: the family's code, at a size a test can train."""

    name = "original-small"
    presets = {
        "original-small": lambda: FashionVLPConfig(
            preset="original-small", backbone="resnet50", image_size=32, text=dict(SMALL_BERT), max_text_len=16
        )
    }

    def reads(self, data: object) -> bool:
        return False  # the original system's files stay the built-in family's


@pytest.mark.slow  # builds a ResNet-50 and BERT
def test_the_original_architecture_trains_with_its_own_text_lr(small_data, cache_dir, bert_uncased_cache):
    """Its parts are its own modules (not FashionVLP's `backbone` / `reference.bert`): one real step."""
    register(SmallOriginal())
    cfg = small_config(small_data, cache_dir, preset="original-small", pretrained=False, text_lr=1e-5)
    trainer = make_trainer(cfg, create_model("original-small", pretrained=False))
    groups = trainer.optimizer.param_groups
    assert [g["name"] for g in groups] == ["heads", "backbone", "text"]
    assert groups[1]["lr_scale"] == 1.0 and groups[2]["lr_scale"] == pytest.approx(1e-5 / LR)
    text = trainer.model.reference_block.vlp_transformer
    assert [id(p) for p in groups[2]["params"]] == [id(p) for p in text.parameters()]
    before = {name: p.detach().clone() for name, p in text.named_parameters()}
    losses = trainer.step([first_batch(trainer)])
    assert all(math.isfinite(x) for x in losses)
    assert any(not torch.equal(before[name], p) for name, p in text.named_parameters())
