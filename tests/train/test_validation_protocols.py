"""`--validation original`: the original system's number (each query's target ranked among the targets of the
validated triplets; the first 30 batches with --fast-validation), checked against an independent
transcription of their `evaluate_model`; each checkpoint records the protocol of each `val_recalls` entry,
and a resume that changes protocol says so and chooses its best anew."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from train_helpers import legacy_copy, load, make_trainer, run_main, small_config, tiny_model

from fashionrec.data.datasets import TripletDataset
from fashionrec.data.fashioniq import load_split
from fashionrec.eval.original_protocol import FAST_BATCHES

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

VAL_TRIPLETS = 33  # more than 30 batches of one


@pytest.fixture(scope="module")
def their_layout(small_data: Path, tmp_path_factory) -> Path:
    """train.json: the dress training queries; val.json: 33 of them in file order, one repeated (their
    validation keeps duplicates)."""
    out = tmp_path_factory.mktemp("layout") / "data"
    legacy_copy(small_data, out)
    train = json.loads((out / "train.json").read_text())
    (out / "val.json").write_text(json.dumps(train[: VAL_TRIPLETS - 1] + train[:1]))
    return out


def their_recall(model, loader: DataLoader, k: int = 10, max_batches: int | None = None) -> float:
    """Their evaluate_model and recall_at_k_from_sim, transcribed: training forward in eval mode, every
    embedding L2-normalised, query i's target is column i, a hit when i is among topk's k indices."""
    model.eval()
    all_ref, all_tar = [], []
    with torch.no_grad():
        for batch_idx, batch in enumerate(loader):
            if max_batches is not None and batch_idx >= max_batches:
                break
            f_ref, f_tar = model(batch)
            all_ref.append(f_ref)
            all_tar.append(f_tar)
    sim = F.normalize(torch.cat(all_ref), p=2, dim=1) @ F.normalize(torch.cat(all_tar), p=2, dim=1).t()
    nq, ng = sim.shape
    top = sim.topk(min(k, ng), dim=1).indices
    return (top == torch.arange(nq).view(-1, 1)).any(dim=1).float().mean().item()


@pytest.mark.parametrize("fast", [False, True])
def test_original_validation_gives_their_number(their_layout, small_data, cache_dir, fast):
    cfg = small_config(
        their_layout, cache_dir, path_folder=str(small_data / "images"), categories=None, batch=1,
        validation="original", fast_validation=fast,
    )  # fmt: skip
    trainer = make_trainer(cfg, tiny_model(cfg))
    metrics = trainer.validate()
    triplets = load_split(their_layout, "val")["all"].triplets
    assert len(triplets) == VAL_TRIPLETS and triplets[0] == triplets[-1]
    dataset = TripletDataset(triplets, trainer.cache, trainer.model.tokenizer, train=False, seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch, shuffle=False)
    limit = FAST_BATCHES if fast else None
    assert metrics["protocol"] == "original" and metrics["queries"] == (30 if fast else VAL_TRIPLETS)
    for k in (10, 50):
        assert metrics["average"][f"recall_at_{k}"] == their_recall(trainer.model, loader, k, limit)
    assert 0 < metrics["average"]["recall_at_10"] < 1


def test_protocols_are_recorded_per_entry_and_best_is_chosen_anew_when_it_changes(
    small_data, cache_dir, tmp_path, capsys
):
    """Ranked among the 10 validated targets, every query of the original protocol is a hit (R@10 = 1); the
    standard protocol ranks all the images the 10 queries name, with a model kept near its random start (a
    tiny LR). Comparing the two numbers would keep epoch 1 as the best."""
    data = legacy_copy(small_data, tmp_path / "data")
    ten = json.loads((data / "train.json").read_text())[:10]
    (data / "val.json").write_text(json.dumps(ten))
    assert len({i for t in ten for i in (t["candidate"], t["target"])}) > 10
    args = [
        "--path-file", str(data), "--path-folder", str(small_data / "images"), "--preset", "tiny",
        "--batch", "8", "--gradient-accumulation", "2", "--num-workers", "0", "--cache-dir", str(cache_dir),
        "--seed", "3", "--lr", "1e-12",
    ]  # fmt: skip
    code, _, _ = run_main(
        capsys, "train", *args, "--epochs", "1", "--validation", "original", "--output-dir", str(tmp_path / "run")
    )
    assert code == 0
    (first,) = (tmp_path / "run").glob("optimized_model_epoch_1_*.pt")
    assert (load(first)["val_protocols"], load(first)["best_protocol"], load(first)["best_recall"]) == (
        ["original"],
        "original",
        1.0,
    )
    assert [p.name for p in (tmp_path / "run").glob("best_*")] == ["best_optimized_model_original_recall_1.0000.pt"]

    code, out, _ = run_main(
        capsys, "resume", "--checkpoint", str(first), *args, "--epochs", "2", "--validation", "standard"
    )
    assert code == 0
    (line,) = [x for x in out.splitlines() if "validation protocol" in x]
    assert line == (
        "validation protocol changes from original to fashioniq-standard (--validation standard): their recalls "
        "do not compare, so the best model is chosen anew from here"
    )
    (second,) = (tmp_path / "run").glob("resumed_model_epoch_2_*.pt")
    ckpt = load(second)
    assert ckpt["val_protocols"] == ["original", "fashioniq-standard"]
    standard = ckpt["val_recalls"][-1]
    assert standard < 1.0 and (ckpt["best_recall"], ckpt["best_protocol"]) == (standard, "fashioniq-standard")
    bests = sorted(p.name for p in (tmp_path / "run").glob("best_*"))
    assert bests == ["best_optimized_model_original_recall_1.0000.pt", f"best_resumed_model_recall_{standard:.4f}.pt"]
