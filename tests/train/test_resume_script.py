"""run_resume_training.sh: checks each path first, prints the settings, resumes with the guide's flags."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from train_helpers import final_checkpoint, load

from fashionrec.cli.main import main

pytestmark = pytest.mark.slow  # starts real processes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "run_resume_training.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "which, message", [(0, "Checkpoint not found"), (1, "annotations folder not found"), (2, "images folder not found")]
)
def test_each_path_is_checked_first(tmp_path, which, message):
    paths = [str(tmp_path), str(tmp_path), str(tmp_path)]
    paths[which] = str(tmp_path / "missing")
    out = run_script(*paths)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {message}: {tmp_path / 'missing'}"


def test_usage_and_bad_numbers(tmp_path):
    assert run_script().returncode == 2 and "usage:" in run_script().stderr
    out = run_script(str(tmp_path), str(tmp_path), str(tmp_path), "lots")
    assert out.returncode == 2 and "batch must be a positive integer" in out.stderr


def test_resumes_with_the_guide_settings(tmp_path, small_data, cache_dir, train_args):
    assert main(["train", *train_args, "--epochs", "2", "--stop-after-epochs", "1", "--output-dir", str(tmp_path)]) == 0
    start = next(tmp_path.glob("optimized_model_epoch_1_*.pt"))
    out = run_script(str(start), str(small_data), str(small_data / "images"), "8", "2", "--cache-dir", str(cache_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "batch:                 8" in out.stdout and "mixed precision:       on" in out.stdout
    final = load(final_checkpoint(tmp_path, "resumed"))
    assert final["epoch"] == 2
    cfg = final["train_config"]
    assert (cfg["batch"], cfg["gradient_accumulation"], cfg["mixed_precision"], cfg["fast_validation"]) == (
        8,
        2,
        True,
        True,
    )
    events = [json.loads(x)["event"] for x in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1
