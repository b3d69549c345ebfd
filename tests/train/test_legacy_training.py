"""The original system's single-file annotations (train.json / val.json, with captions or with feedback_tokens)
work with the default flags, for training and for an exact resume."""

from __future__ import annotations

import pytest
from train_helpers import assert_same_training, final_checkpoint, legacy_copy

from fashionrec.cli.main import main
from fashionrec.model.checkpoint_format import read

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not


def test_train_on_the_legacy_layout_with_default_categories(small_data, cache_dir, tmp_path, capsys):
    legacy = legacy_copy(small_data, tmp_path / "legacy")
    code = main([
        "train", "--path-file", str(legacy), "--path-folder", str(small_data / "images"),
        "--preset", "tiny", "--batch", "8", "--epochs", "1", "--num-workers", "0",
        "--cache-dir", str(cache_dir), "--output-dir", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    final = read(next((tmp_path / "run").glob("final_optimized_model_epoch_1_*.pt")))
    assert final.train_config["categories"] is None and final.epoch == 1


def test_train_then_resume_on_feedback_tokens_is_bit_identical(
    small_data, cache_dir, tmp_path, capsys, bert_uncased_cache
):
    """The token ids are decoded with the vocabulary of the local Hugging Face cache: no --text-model needed."""
    legacy = legacy_copy(small_data, tmp_path / "legacy", tokens=True)
    data = ["--path-file", str(legacy), "--path-folder", str(small_data / "images")]
    flags = [
        *data, "--preset", "tiny", "--batch", "8", "--epochs", "2", "--num-workers", "0",
        "--cache-dir", str(cache_dir), "--seed", "3",
    ]  # fmt: skip
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", *flags, "--output-dir", str(whole)]) == 0, capsys.readouterr().err
    assert main(["train", *flags, "--stop-after-epochs", "1", "--output-dir", str(split)]) == 0
    start = next(split.glob("optimized_model_epoch_1_recall_*.pt"))
    assert not list(split.glob("final_*.pt"))  # stopped after epoch 1: the run is not over
    assert main(["resume", "--checkpoint", str(start), *data]) == 0, capsys.readouterr().err
    resumed = read(final_checkpoint(split, "resumed"))
    assert resumed.epoch == 2 and resumed.model_config.preset == "tiny"
    assert_same_training(final_checkpoint(whole), final_checkpoint(split, "resumed"))
