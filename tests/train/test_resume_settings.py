"""Resuming with changed settings, old checkpoint formats, and bad input: in-process `main()` calls (the
CLI's own code path, without an interpreter start-up per run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from train_helpers import final_checkpoint, load, run_main, save

from fashionrec.cli.main import main

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

ORIGINAL_KEYS = (
    "epoch",
    "model_state_dict",
    "optimizer_state_dict",
    "scheduler_state_dict",
    "loss",
    "recall_at_10",
    "train_losses",
    "val_recalls",
)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, train_args) -> Path:
    """A finished 2-epoch run; tests copy its final checkpoint before resuming from it."""
    out = tmp_path_factory.mktemp("two_epochs")
    assert main(["train", *train_args, "--epochs", "2", "--output-dir", str(out)]) == 0
    return final_checkpoint(out)


@pytest.fixture
def start(two_epochs, tmp_path) -> Path:
    dest = tmp_path / two_epochs.name
    shutil.copy(two_epochs, dest)
    return dest


def resume_events(directory: Path) -> list[dict]:
    lines = (directory / "training_log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "resume"]


def test_more_epochs_extend_the_schedule_smoothly(start, train_args, capsys):
    assert run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", "4")[0] == 0
    final = load(final_checkpoint(start.parent, "resumed"))
    assert final["epoch"] == 4 and len(final["train_losses"]) == 4 and len(final["val_recalls"]) == 4
    event = resume_events(start.parent)[0]
    assert event["schedule"]["kind"] == "continuation"
    # No jump: the finished run's last step used OneCycle's final LR, and the extension starts there.
    assert event["lr"] == pytest.approx(3e-4 / (25 * 1e4), rel=1e-12) == event["schedule"]["start_lr"]
    assert final["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(event["schedule"]["end_lr"])


@pytest.mark.parametrize("epochs, code", [("1", 2), ("2", 0)])
def test_epochs_not_beyond_the_checkpoint_train_nothing(start, train_args, epochs, code, capsys):
    before = sorted(p.name for p in start.parent.iterdir())
    returncode, out, err = run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", epochs)
    assert returncode == code
    assert "nothing to train" in (out if code == 0 else err)
    assert sorted(p.name for p in start.parent.iterdir()) == before


def test_lr_override_is_the_peak_of_the_remaining_schedule(start, train_args, capsys):
    assert run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", "3", "--lr", "1e-3")[0] == 0
    event = resume_events(start.parent)[0]
    assert event["lr"] == pytest.approx(1e-3)
    assert event["schedule"]["peak_lr"] == pytest.approx(1e-3)
    assert load(final_checkpoint(start.parent, "resumed"))["schedule"]["peak_lr"] == pytest.approx(1e-3)


def test_checkpoint_without_scheduler_state_gets_a_new_schedule(start, train_args, capsys):
    ckpt = load(start)
    del ckpt["scheduler_state_dict"], ckpt["schedule"]
    save(start, ckpt)
    code, out, _ = run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", "3")
    assert code == 0 and "no scheduler state" in out
    assert load(final_checkpoint(start.parent, "resumed"))["epoch"] == 3


def test_other_batch_size_warns_and_resizes(start, train_args, capsys):
    args = [a if a != "8" else "4" for a in train_args]  # --batch 8 -> 4
    code, out, _ = run_main(capsys, "resume", "--checkpoint", str(start), *args, "--epochs", "3")
    assert code == 0 and "warning: --batch differs from the checkpoint's (8 -> 4)" in out
    assert load(final_checkpoint(start.parent, "resumed"))["epoch"] == 3


def test_another_preset_is_refused_before_training(start, train_args, capsys):
    args = [a if a != "tiny" else "paper" for a in train_args]
    code, _, err = run_main(capsys, "resume", "--checkpoint", str(start), *args, "--epochs", "3")
    assert code == 2 and err.startswith("error: --preset 'paper' contradicts the checkpoint")
    assert len(err.splitlines()) == 1 and not list(start.parent.glob("resumed_*"))


def test_original_format_checkpoint_loads_with_the_matching_preset(start, train_args, capsys):
    ckpt = load(start)
    torch.save({k: ckpt[k] for k in ORIGINAL_KEYS}, start)
    no_preset = [a for a in train_args if a not in ("--preset", "tiny")]
    code, _, err = run_main(capsys, "resume", "--checkpoint", str(start), *no_preset, "--epochs", "3")
    assert code == 2 and "pass --preset" in err
    assert run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", "3")[0] == 0
    assert load(final_checkpoint(start.parent, "resumed"))["epoch"] == 3


def test_original_format_checkpoint_of_another_architecture_lists_the_mismatch(start, train_args, capsys):
    ckpt = load(start)
    state = dict(ckpt["model_state_dict"])
    state["target.proj.weight"] = torch.zeros(3, 3)
    del state["target.proj.bias"]
    torch.save({**{k: ckpt[k] for k in ORIGINAL_KEYS}, "model_state_dict": state}, start)
    code, _, err = run_main(capsys, "resume", "--checkpoint", str(start), *train_args, "--epochs", "3")
    assert code == 2
    assert "missing: target.proj.bias" in err
    assert "target.proj.weight: checkpoint (3, 3) vs model (128, 128)" in err


def test_missing_checkpoint_is_one_line(tmp_path, train_args, capsys):
    missing = tmp_path / "checkpoints" / "optimized_model_epoch_10_recall_0.3456.pt"
    code, _, err = run_main(capsys, "resume", "--checkpoint", str(missing), *train_args)
    assert code == 2
    assert err == f"error: argument --checkpoint: checkpoint not found: {missing}\n"


def test_truncated_checkpoint_is_a_clear_error(start, train_args, capsys):
    start.write_bytes(start.read_bytes()[:1000])
    code, _, err = run_main(capsys, "resume", "--checkpoint", str(start), *train_args)
    assert code == 2 and "truncated or corrupt" in err and len(err.splitlines()) == 1


def test_checkpoints_keep_the_original_keys_and_evaluate_reports_json(two_epochs, small_data, cache_dir, capsys):
    ckpt = load(two_epochs)
    assert set(ORIGINAL_KEYS) <= set(ckpt)
    assert ckpt["epoch"] == 2 and len(ckpt["train_losses"]) == 2 and len(ckpt["val_recalls"]) == 2
    code, out, _ = run_main(
        capsys,
        "evaluate",
        "--checkpoint",
        str(two_epochs),
        "--path-file",
        str(small_data),
        "--path-folder",
        str(small_data / "images"),
        "--categories",
        "dress",
        "--cache-dir",
        str(cache_dir),
        "--num-workers",
        "0",
        "--json",
    )
    assert code == 0
    metrics = json.loads(out)
    assert set(metrics) == {"protocol", "dress", "average"} and metrics["protocol"] == "fashioniq-standard"
    for value in (*metrics["dress"].values(), *metrics["average"].values()):
        assert 0.0 <= value <= 1.0
    assert metrics["average"]["recall_at_10"] == pytest.approx(ckpt["recall_at_10"])  # training tracks this metric
