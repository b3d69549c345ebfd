"""A newest checkpoint damaged in the middle (where torch's reader notices nothing) is skipped by a resume from
its folder, with a warning, and the run resumed from the previous one still ends bit-identical."""

from __future__ import annotations

import pytest
import torch
from train_helpers import assert_same_training, final_checkpoint

from fashionrec.cli.main import main


def damage_the_middle_of_a_weight(path) -> None:
    """1 KB of other bytes inside the largest tensor's data."""
    from fashionrec.model.checkpoint_format import read

    state = read(path).model_state
    name = max(state, key=lambda k: state[k].numel())
    pattern = state[name].reshape(-1)[:64].numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(pattern)
    assert at > 0
    data[at : at + 1024] = torch.randn(256).numpy().tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_resume_from_a_folder_skips_a_damaged_newest_file_and_stays_bit_exact(train_args, tmp_path, capsys):
    common = [*train_args, "--epochs", "3"]
    assert main(["train", *common, "--output-dir", str(tmp_path / "reference")]) == 0
    run = tmp_path / "run"
    assert main(["train", *common, "--stop-after-epochs", "2", "--output-dir", str(run)]) == 0
    newest = next(run.glob("optimized_model_epoch_2_recall_*.pt"))
    damage_the_middle_of_a_weight(newest)
    capsys.readouterr()

    assert main(["resume", "--checkpoint", str(run), *common]) == 0
    out = capsys.readouterr().out
    assert f"warning: skipping unreadable checkpoint ({newest} is damaged" in out
    assert "resuming from" in out and "optimized_model_epoch_1_recall_" in out
    assert_same_training(final_checkpoint(tmp_path / "reference"), final_checkpoint(run, "resumed"))

    assert main(["evaluate", "--checkpoint", str(newest), *train_args[:4]]) == 2  # named directly: one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged: its content does not match the digest" in err
