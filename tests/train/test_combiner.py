"""The clip4cir preset: CLIP4Cir's Combiner trained over a frozen CLIP whose features are computed once.

The CLIP is a tiny, randomly initialised open_clip model (tests/model/clip_models.py) made into a fashionrec
model directory by `init`; `--model DIR` starts training from it, in this process or in torchrun's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip_models import register_open_clip
from train_helpers import assert_same_training, final_checkpoint, load

from fashionrec.cli.main import main
from fashionrec.data import cache as image_cache
from fashionrec.data.demo import make_demo_data
from fashionrec.model import load_model
from fashionrec.model.clip_encoders import ClipEncoder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    assert main(["init", "--no-pretrained", "--model", register_open_clip(root), str(root / "model")]) == 0
    return root / "model"


def run_args(data: Path, clip_dir: Path, cache: Path, *more: str) -> list[str]:
    return [
        "--path-file", str(data), "--path-folder", str(data / "images"), "--categories", "dress",
        "--preset", "clip4cir", "--model", str(clip_dir), "--num-workers", "0", "--cache-dir", str(cache),
        "--seed", "3", "--device", "cpu", *more,
    ]  # fmt: skip


def assert_same_encoder(a, b) -> None:
    mine, theirs = a.encoder.state_dict(), b.encoder.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in mine.items())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many images are decoded, and how many batches go through CLIP's image and text encoders."""
    counts = {"decoded": 0, "image": 0, "text": 0}

    def counting(key: str, function):
        def wrapper(*args, **kw):
            counts[key] += 1
            return function(*args, **kw)

        return wrapper

    monkeypatch.setattr(image_cache, "load_image", counting("decoded", image_cache.load_image))
    monkeypatch.setattr(ClipEncoder, "encode_image", counting("image", ClipEncoder.encode_image))
    monkeypatch.setattr(ClipEncoder, "encode_text", counting("text", ClipEncoder.encode_text))
    return counts


@pytest.mark.slow  # two training runs
def test_frozen_features_are_computed_once_and_a_run_stopped_mid_epoch_resumes_bit_identical(
    clip_dir, small_data, tmp_path, counted, capsys
):
    """With --accumulate-negatives (the loss over both micro-batches of a step; the Combiner's dropout
    replayed), as the Trainer does it for every model."""
    args = run_args(small_data, clip_dir, tmp_path / "cache", "--batch", "8", "--epochs", "2", "--accumulate-negatives")
    reference = tmp_path / "reference"
    assert main(["train", *args, "--save-every-steps", "3", "--output-dir", str(reference)]) == 0
    out = capsys.readouterr().out
    assert counted["decoded"] > 0 and counted["image"] > 0 and counted["text"] > 0
    assert "image features of the frozen backbone: 40 computed, 0 read" in out
    saved = load(final_checkpoint(reference))
    assert [g["name"] for g in saved["optimizer_state_dict"]["param_groups"]] == ["heads"]  # the Combiner alone
    assert saved["model_config"]["combiner"] == {"projection_dim": 256, "hidden_dim": 512, "dropout": 0.5}

    step_file = sorted(reference.glob("optimized_model_epoch_2_step_*.pt"))[0]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(step_file, resumed / step_file.name)
    counted.update(decoded=0, image=0, text=0)
    assert main(["resume", "--checkpoint", str(resumed), *args]) == 0
    assert counted == {"decoded": 0, "image": 0, "text": 0}  # no image decoded, no CLIP pass: all cached
    assert "image features of the frozen backbone: 0 computed, 40 read" in capsys.readouterr().out
    assert_same_training(final_checkpoint(reference), final_checkpoint(resumed))
    assert_same_encoder(load_model(final_checkpoint(resumed)), load_model(clip_dir))  # frozen: never trained


@pytest.mark.slow
def test_a_text_lr_fine_tunes_the_text_encoder_and_only_image_features_are_cached(
    clip_dir, small_data, tmp_path, counted, capsys
):
    args = run_args(small_data, clip_dir, tmp_path / "cache", "--batch", "8", "--epochs", "1", "--text-lr", "1e-4")
    assert main(["train", *args, "--output-dir", str(tmp_path / "run")]) == 0
    assert "image features of the frozen backbone" in capsys.readouterr().out
    assert [p.name.split("-")[0] for p in (tmp_path / "cache" / "features").iterdir()] == ["image"]
    assert counted["text"] > 0  # every step runs the text encoder
    saved = load(final_checkpoint(tmp_path / "run"))
    groups = saved["optimizer_state_dict"]["param_groups"]
    assert [g["name"] for g in groups] == ["heads", "text"] and groups[1]["lr_scale"] == pytest.approx(1e-4 / 3e-4)
    start, end = load_model(clip_dir).encoder, load_model(final_checkpoint(tmp_path / "run")).encoder
    for part, moved in (("text", True), ("backbone", False)):
        before, after = start.part_state(part), end.part_state(part)
        assert any(not torch.equal(before[k], after[k]) for k in before) == moved, part


@pytest.mark.slow  # two training runs
def test_clip4cirs_two_stages_fine_tune_clip_then_train_the_combiner_on_it(clip_dir, small_data, tmp_path, capsys):
    """Stage 1: the sum model with both encoders fine-tuned (nothing frozen, nothing cached); stage 2: the
    Combiner over stage 1's encoders, frozen (--model names stage 1's checkpoint)."""
    stage1 = run_args(small_data, clip_dir, tmp_path / "cache", "--batch", "8", "--epochs", "1")
    stage1[stage1.index("clip4cir")] = "clip"
    assert main(["train", *stage1, "--output-dir", str(tmp_path / "none")]) == 2
    assert "--preset clip has nothing to train here: give --backbone-lr and/or --text-lr" in capsys.readouterr().err
    parts = ["--backbone-lr", "1e-4", "--text-lr", "1e-4", "--output-dir", str(tmp_path / "stage1")]
    assert main(["train", *stage1, *parts]) == 0
    assert not (tmp_path / "cache" / "features").exists()
    tuned = load_model(final_checkpoint(tmp_path / "stage1"))
    stage2 = run_args(small_data, final_checkpoint(tmp_path / "stage1"), tmp_path / "cache", "--batch", "8")
    assert main(["train", *stage2, "--epochs", "1", "--output-dir", str(tmp_path / "stage2")]) == 0
    combined = load_model(final_checkpoint(tmp_path / "stage2"))
    assert_same_encoder(combined, tuned)
    assert combined.config.preprocess == tuned.config.preprocess | {"resize": "targetpad"}
    index = ["--images", str(small_data / "images"), "--out", str(tmp_path / "index"), "--device", "cpu"]
    assert main(["index", "--checkpoint", str(final_checkpoint(tmp_path / "stage2")), *index]) == 0


@pytest.mark.slow  # trains for ten epochs
def test_the_combiner_learns_on_demo_data(clip_dir, tmp_path, capsys):
    """Chance is 10 / 100 gallery images. A random CLIP's image features alone place the target about as
    well as chance (its features say little about garments), so what the Combiner reaches it learned:
    the best epoch's R@10 (what the run keeps as its best checkpoint) must be 3x chance."""
    data = make_demo_data(tmp_path / "data", images=900, seed=3, image_size=64, val_images=100)
    args = run_args(data, clip_dir, tmp_path / "cache", "--batch", "32", "--gradient-accumulation", "1")
    assert main(["train", *args, "--epochs", "10", "--lr", "2e-3", "--output-dir", str(tmp_path / "run")]) == 0
    epochs = [json.loads(line) for line in (tmp_path / "run" / "training_log.jsonl").read_text().splitlines()]
    recalls = [e["metrics"]["average"]["recall_at_10"] for e in epochs if e["event"] == "epoch"]
    chance = 10 / 100
    assert max(recalls) >= 3 * chance and recalls[-1] > 2 * recalls[0], recalls
    assert len(list((tmp_path / "run").glob(f"best_optimized_model_recall_{max(recalls):.4f}.pt"))) == 1


@pytest.mark.slow  # torchrun
def test_ddp_ranks_share_rank0s_feature_cache(clip_dir, small_data, tmp_path):
    """Rank 1 gets rank 0's weights only when DDP wraps the model: it must read rank 0's caches, never
    compute (or name) its own."""
    args = run_args(small_data, clip_dir, tmp_path / "cache", "--batch", "4", "--epochs", "1", "--global-negatives")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "fashionrec", "train", *args, "--output-dir", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "features").iterdir()) == ["image", "text"]
    saved = load(final_checkpoint(tmp_path / "run"))
    assert saved["world_size"] == 2 and len(saved["rng_state_per_rank"]) == 2
    assert_same_encoder(load_model(final_checkpoint(tmp_path / "run")), load_model(clip_dir))
