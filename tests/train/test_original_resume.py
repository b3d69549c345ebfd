"""The original system's users resume their own run: `python resume_training.py` with the guide's settings
on a checkpoint in the original's exact format (written by the spec of its model after two real AdamW +
OneCycleLR steps, at reduced BERT width, keys under `_orig_mod.`), with annotations in its train.json /
val.json layout (`feedback_tokens`) and its images folder. The original planned one epoch of two steps, so
resuming to epoch 2 goes beyond its OneCycleLR: where their resume_training.py stops ("Tried to step"),
the run goes on at the schedule's final LR."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from original_run import SMALL_BERT, train_original
from train_helpers import MINILM, final_checkpoint, legacy_copy, load

from fashionrec.model import load_model
from fashionrec.model.checkpoint_format import read
from fashionrec.model.original import OriginalFashionVLP
from fashionrec.train.trainer import cpu_has_native_bf16

pytestmark = pytest.mark.slow  # starts real processes

ROOT = Path(__file__).resolve().parents[2]
THEIR_FILE = "optimized_model_epoch_1_recall_0.1234.pt"
PLANNED_STEPS = 2  # the original's OneCycleLR total_steps: one epoch of two steps, both taken
QUERIES = 4  # train triplets and validation queries: ResNet-50 at 224 px on a CPU is slow


@pytest.fixture(scope="module")
def their_file(tmp_path_factory) -> Path:
    *_, ckpt = train_original(steps=2, total_steps=PLANNED_STEPS, recall=0.1234)
    path = tmp_path_factory.mktemp("their_run") / THEIR_FILE
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def data_flags(small_data, cache_dir, tmp_path_factory) -> list[str]:
    """Their annotations (train.json / val.json with feedback_tokens) and images, read as on a CPU machine."""
    legacy = legacy_copy(small_data, tmp_path_factory.mktemp("annotations") / "legacy", tokens=True, queries=QUERIES)
    return [
        "--path-file", str(legacy), "--path-folder", str(small_data / "images"), "--num-workers", "0",
        "--text-model", str(MINILM), "--cache-dir", str(cache_dir),
    ]  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def adam_steps(optimizer_state: dict) -> dict[int, float]:
    return {pid: float(state["step"]) for pid, state in optimizer_state["state"].items()}


def resume_event(folder: Path) -> dict:
    events = [json.loads(line) for line in (folder / "training_log.jsonl").read_text().splitlines()]
    (resume,) = [e for e in events if e["event"] == "resume"]
    return resume


def test_resume_training_py_continues_their_run_with_the_guides_settings(their_file, data_flags, require):
    """The guide's resume (accumulation 2, mixed precision) on their file: one optimizer step past the end of
    their OneCycleLR, as one ResNet-50 run (the shell script's own part is test_resume_script.py's)."""
    require("mediapipe")
    folder, before = their_file.parent, sha256(their_file)
    theirs = torch.load(their_file, weights_only=True)
    converted = read(their_file, note=lambda _: None, text_model=str(MINILM))
    out = run(sys.executable, "resume_training.py", "--checkpoint", str(their_file), *data_flags, "--epochs", "2",
        "--batch", "2", "--gradient-accumulation", "2", "--mixed-precision", "--landmarks", "mediapipe")  # fmt: skip

    assert sha256(their_file) == before
    epoch_file = next(folder.glob("resumed_model_epoch_2_recall_*.pt"))
    assert len(list(folder.glob("best_resumed_model_recall_*.pt"))) == 1
    final = final_checkpoint(folder, "resumed")
    assert final.name.startswith("final_resumed_model_epoch_2_recall_")

    resumed = load(epoch_file)
    cfg = resumed["train_config"]
    assert (resumed["epoch"], cfg["preset"], cfg["gradient_accumulation"], cfg["mixed_precision"]) == (
        2,
        "original",
        2,
        True,
    )
    taken = QUERIES // (2 * 2)  # micro-batches of 2, accumulated by 2
    assert resumed["global_step"] == theirs["scheduler_state_dict"]["last_epoch"] + taken == PLANNED_STEPS + 1
    # Adam's step counts continue, parameter for parameter (ids in fashionrec's order; BERT's pooler has none).
    start = adam_steps(converted.optimizer_state)
    assert set(start) == set(adam_steps(resumed["optimizer_state_dict"])) and len(start) < len(
        resumed["model_state_dict"]
    )
    assert adam_steps(resumed["optimizer_state_dict"]) == {pid: step + taken for pid, step in start.items()}
    assert set(adam_steps(theirs["optimizer_state_dict"]).values()) == {2.0}
    # Their OneCycleLR goes on as saved: the next step takes the LR it left in the optimizer (as their script's
    # does), and where their script stops, the run goes on at the final LR, max_lr / (25 x 1e4).
    event = resume_event(folder)
    their_group = theirs["optimizer_state_dict"]["param_groups"][0]
    assert event["lr"] == their_group["lr"] and event["schedule"]["kind"] == "onecycle"
    assert "resume_training.py would stop after step 3" in out.stdout
    assert resumed["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(their_group["max_lr"] / 2.5e5)
    assert resumed["scheduler_state_dict"]["total_steps"] == PLANNED_STEPS
    # Mixed precision is bf16 where the CPU has bf16 arithmetic; elsewhere fp32, said in one line.
    native = cpu_has_native_bf16()
    assert resumed["precision"] == ("bf16" if native else "fp32")
    assert out.stdout.count("note: --mixed-precision: this CPU has no native bf16 arithmetic") == (0 if native else 1)
    # Their recalls were measured with their protocol, this run's with the standard one: best starts anew.
    assert "validation protocol changes from original to fashioniq-standard" in out.stdout
    assert resumed["val_protocols"] == ["original", "fashioniq-standard"]
    # What the run trained with is what the checkpoint records, for index and serve to preprocess alike.
    assert resumed["model_config"]["preprocess"]["landmarks"] == "mediapipe"

    model = load_model(epoch_file)
    assert isinstance(model, OriginalFashionVLP) and model.config.preset == "original"
    assert model.config.text == SMALL_BERT and model.config.preprocess["landmarks"] == "mediapipe"
