"""The original system's single-file annotations (train.json / val.json) work with the default flags."""

from __future__ import annotations

import json
from pathlib import Path

from fashionrec.cli.main import main
from fashionrec.data.fashioniq import load_split
from fashionrec.model.checkpoint_format import read


def legacy_copy(demo: Path, out: Path) -> Path:
    """The demo's dress queries as the original system's train.json / val.json."""
    out.mkdir()
    for split in ("train", "val"):
        triplets = load_split(demo, split, ["dress"])["dress"].triplets
        records = [{"candidate": t.candidate, "target": t.target, "captions": list(t.captions)} for t in triplets]
        (out / f"{split}.json").write_text(json.dumps(records))
    return out


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
