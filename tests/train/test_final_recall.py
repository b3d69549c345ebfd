"""The final checkpoint's recall is the full validation set's: what `fashionrec evaluate` prints for it."""

from __future__ import annotations

import json

import pytest

from fashionrec.cli.main import main
from fashionrec.model.checkpoint_format import read


@pytest.mark.slow
def test_final_recall_with_fast_validation_equals_evaluate_json(small_data, cache_dir, tmp_path, capsys):
    data = ["--path-file", str(small_data), "--path-folder", str(small_data / "images"), "--categories", "dress"]
    common = [*data, "--cache-dir", str(cache_dir), "--num-workers", "0"]
    code = main([
        "train", *common, "--preset", "tiny", "--batch", "8", "--epochs", "1", "--output-dir", str(tmp_path),
        "--fast-validation", "--fast-validation-queries", "3",
    ])  # fmt: skip
    assert code == 0
    epoch_file = read(next(tmp_path.glob("optimized_model_epoch_1_recall_*.pt")))
    final_path = next(tmp_path.glob("final_optimized_model_epoch_1_recall_*.pt"))
    final = read(final_path)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(final_path), *common, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["protocol"] == "fashioniq-standard"
    assert final.data["recall_at_10"] == pytest.approx(metrics["average"]["recall_at_10"])
    assert final.data["recall_at_50"] == pytest.approx(metrics["average"]["recall_at_50"])
    assert f"recall_{metrics['average']['recall_at_10']:.4f}" in final_path.name
    # 3 queries of the subset vs every query: the epoch file keeps the fast figure it was trained with
    assert epoch_file.data["val_recalls"] == final.data["val_recalls"]
