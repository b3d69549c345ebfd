"""The one learning test: model, loss, data and evaluation work together. The tiny preset trained on demo
data on the CPU must rank the right target far above chance."""

from __future__ import annotations

import pytest
from train_helpers import final_checkpoint, load

from fashionrec.cli.main import main
from fashionrec.data.demo import make_demo_data
from fashionrec.data.fashioniq import load_split


@pytest.mark.slow
def test_tiny_preset_learns_demo_data(tmp_path):
    data = make_demo_data(tmp_path / "data", images=1800, seed=11)
    code = main(
        [
            "train",
            "--path-file",
            str(data),
            "--path-folder",
            str(data / "images"),
            "--categories",
            "dress",
            "--preset",
            "tiny",
            "--batch",
            "32",
            "--gradient-accumulation",
            "1",
            "--lr",
            "1e-3",
            "--epochs",
            "3",
            "--num-workers",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    gallery = len(load_split(data, "val", ["dress"])["dress"].gallery)
    chance = 10 / gallery  # the whole gallery is ranked, the query's own image included
    recalls = load(final_checkpoint(tmp_path / "run"))["val_recalls"]
    assert recalls[-1] >= 5 * chance, f"R@10 {recalls} vs chance {chance:.3f} (gallery {gallery})"
    assert recalls[-1] > recalls[0]
