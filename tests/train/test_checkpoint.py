"""The checkpoint manager: names, atomic writes, retention, folder mode, safe loading."""

from __future__ import annotations

import os

import pytest
import torch

from fashionrec.errors import UserError
from fashionrec.model import checkpoint_format
from fashionrec.train.checkpoint import CheckpointManager, load_checkpoint, parse_periodic


def state(epoch: int, value: float = 0.0) -> dict:
    return {"epoch": epoch, "model_state_dict": {"w": torch.full((3,), value)}}


def test_file_names_follow_the_guide(tmp_path):
    m = CheckpointManager(tmp_path, "optimized_model")
    epoch_file = m.save_epoch(state(10), 10, 0.34561)
    assert epoch_file.name == "optimized_model_epoch_10_recall_0.3456.pt"
    assert m.save_best(epoch_file, 0.34561).name == "best_optimized_model_recall_0.3456.pt"
    assert m.save_final(epoch_file, 10, 0.34561).name == "final_optimized_model_epoch_10_recall_0.3456.pt"
    assert m.save_step(state(10), 11, 7).name == "optimized_model_epoch_11_step_7.pt"
    r = CheckpointManager(tmp_path, "resumed_model")
    assert r.save_epoch(state(12), 12, 0.5).name == "resumed_model_epoch_12_recall_0.5000.pt"


def test_best_files_of_another_protocol_are_named_by_it_and_never_replace_the_standard_ones(tmp_path):
    m = CheckpointManager(tmp_path, "resumed_model")
    first = m.save_epoch(state(1), 1, 0.9)
    assert m.save_best(first, 0.9, "original").name == "best_resumed_model_original_recall_0.9000.pt"
    second = m.save_epoch(state(2), 2, 0.2)
    assert m.save_best(second, 0.2).name == "best_resumed_model_recall_0.2000.pt"
    third = m.save_epoch(state(3), 3, 0.3)
    m.save_best(third, 0.3)
    assert sorted(p.name for p in tmp_path.glob("best_*")) == [
        "best_resumed_model_original_recall_0.9000.pt",
        "best_resumed_model_recall_0.3000.pt",
    ]


def test_a_folder_of_the_original_systems_plain_train_py_files_is_searched(tmp_path):
    """Its train.py named them model_epoch_{E}_recall_{R}.pt (epoch 1, then every 5th)."""
    for epoch in (1, 5, 10):
        torch.save(state(epoch), tmp_path / f"model_epoch_{epoch}_recall_0.{epoch:04d}.pt")
    torch.save(state(10), tmp_path / "best_model_recall_0.0010.pt")
    assert parse_periodic(tmp_path / "model_epoch_10_recall_0.0010.pt").progress == (10, 0)
    assert parse_periodic(tmp_path / "best_model_recall_0.0010.pt") is None
    assert parse_periodic(tmp_path / "final_model_epoch_100_recall_0.3000.pt") is None
    assert load_checkpoint(tmp_path, lambda _: None).path.name == "model_epoch_10_recall_0.0010.pt"


def test_everything_saved_loads_with_weights_only(tmp_path):
    path = CheckpointManager(tmp_path, "optimized_model").save_epoch(state(1, 2.0), 1, 0.1)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["model_state_dict"]["w"], torch.full((3,), 2.0))


def test_a_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path, "optimized_model")
    path = m.save_epoch(state(1, 1.0), 1, 0.25)
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint_format.torch, "save", crash)
    with pytest.raises(OSError):
        m.save_epoch(state(1, 9.0), 1, 0.25)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_temp_files_of_a_killed_save_are_removed_and_never_loaded(tmp_path):
    good = CheckpointManager(tmp_path, "optimized_model").save_epoch(state(1), 1, 0.1)
    (tmp_path / ".optimized_model_epoch_2_recall_0.2000.pt.abc123.tmp").write_bytes(b"partial")
    assert load_checkpoint(tmp_path).path == good
    CheckpointManager(tmp_path, "resumed_model")
    assert not list(tmp_path.glob(".*.tmp"))


def test_folder_mode_picks_the_newest_by_progress_and_falls_back_past_corrupt_files(tmp_path):
    m = CheckpointManager(tmp_path, "optimized_model")
    m.save_epoch(state(1), 1, 0.9)
    step = m.save_step(state(1), 2, 5)
    newest = m.save_epoch(state(2), 2, 0.1)
    assert load_checkpoint(tmp_path).path == newest
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    messages = []
    assert load_checkpoint(tmp_path, log=messages.append).path == step
    assert "falling back" in messages[0] and newest.name in messages[0]


def test_progress_order_puts_step_files_between_epochs(tmp_path):
    assert parse_periodic(tmp_path / "optimized_model_epoch_3_recall_0.1000.pt").progress == (3, 0)
    assert parse_periodic(tmp_path / "resumed_model_epoch_4_step_20.pt").progress == (3, 20)
    assert parse_periodic(tmp_path / "best_optimized_model_recall_0.1000.pt") is None
    assert parse_periodic(tmp_path / "final_resumed_model_epoch_3_recall_0.1000.pt") is None


def test_missing_and_corrupt_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=f"Checkpoint not found: {tmp_path / 'nope.pt'}"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoint files"):
        load_checkpoint(tmp_path / "empty")


def test_best_is_replaced_only_within_the_run_and_keep_last_never_prunes_best_final_or_start(tmp_path):
    origin = CheckpointManager(tmp_path, "resumed_model").save_epoch(state(1), 1, 0.1)
    m = CheckpointManager(tmp_path, "resumed_model", keep_last=2, protected=origin)
    files = []
    for e in range(2, 6):
        files.append(m.save_epoch(state(e), e, e / 10))
        if e in (2, 3):
            best = m.save_best(files[-1], e / 10)
    final = m.save_final(files[-1], 5, 0.5)
    left = {p.name for p in tmp_path.glob("*.pt")}
    assert left == {origin.name, files[2].name, files[3].name, best.name, final.name}
    assert best.name == "best_resumed_model_recall_0.3000.pt"
    assert os.path.samefile(final, files[3])  # best and final are links: no extra write
    with pytest.raises(UserError, match="refusing to overwrite"):
        CheckpointManager(tmp_path, "resumed_model", protected=origin).save_epoch(state(1), 1, 0.1)
