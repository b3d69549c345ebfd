"""Training on several processes (torchrun, DDP, gloo on CPU, 2 ranks).

What is compared to what:
- A DDP run with --global-negatives and a single process at the same global batch (2 x 4 vs 1 x 8) see the
  same samples in every optimizer step (DistributedSampler gives rank r the items perm[r::2], so step k's
  union over ranks is the single process's batch perm[8k:8k+8], in another order), contrast each query with
  the same targets, and step with the same gradient: their per-step losses agree to float tolerance. That
  needs dropout 0, so this file doubles as a torchrun entry point that runs the real CLI with a model of
  the test's choosing (see `harness`).
- Sharded validation gives the single-process metric of the same checkpoint.
- A DDP run stopped with SIGTERM mid-epoch and resumed ends bit-identical to the uninterrupted DDP run
  (dropout on: each rank's RNG state travels in the checkpoint).
  Those runs train on 35 triplets, so the sampler pads each epoch with a repeated item.
- SIGTERM makes every rank exit with 143 (each rank's own exit status, read through rank_exit_status.py).
- A crashing or hung rank ends the whole job with a non-zero exit and the rank's error, instead of a hang;
  rank 0's slow work may outlast the collective timeout, and a rank 0 stuck for good still ends the job
  after FASHIONREC_DIST_WAIT_TIMEOUT_S.

Run as a script: `python -m torch.distributed.run ... test_distributed.py OPTIONS_JSON CLI_ARGS...`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from train_helpers import assert_same_training, final_checkpoint, load, oom_in_backward

from fashionrec.cli.main import main
from fashionrec.data.demo import make_demo_data
from fashionrec.eval.retrieval import EvalSettings, evaluate, shard
from fashionrec.model import checkpoint_format, create_model
from fashionrec.model.config import ModelConfig
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.model.hub import load_model
from fashionrec.model.tokenizer import TextTokenizer
from fashionrec.train import main as train_main
from fashionrec.train.checkpoint import CheckpointManager
from fashionrec.train.data import build_cache, load_training_data
from fashionrec.train.params import TrainConfig
from fashionrec.train.trainer import Trainer

pytestmark = pytest.mark.slow  # starts real processes

TRAIN_TRIPLETS = 36  # even: no DistributedSampler padding; 18 per rank = batches of 4, 4, 4, 4, 2
PADDED_TRIPLETS = 35  # odd: rank 1's shard ends with the permutation's first item again
BATCH = 4
EXIT_STATUS = Path(__file__).with_name("rank_exit_status.py")


# ---- the torchrun entry point: the real CLI with test-only changes -------------------------------------
def _pinned_model(options: dict[str, Any]) -> Callable[..., FashionVLP]:
    path = options.get(f"model_rank{os.environ.get('RANK', '0')}", options["model"])
    saved = json.loads(Path(path).read_text())

    def create(*_args: Any, **_kw: Any) -> FashionVLP:
        config = ModelConfig.from_dict(saved["config"])
        return FashionVLP(config, TextTokenizer.from_json(saved["tokenizer"], config.max_text_len))

    return create


def _instrumented_step(options: dict[str, Any]) -> Callable[[Trainer, list], list[float]]:
    original = Trainer.step

    hooked: set[int] = set()

    def step(self: Trainer, group: list) -> list[float]:
        if self.rank == options.get("oom_rank") and id(self) not in hooked:  # the model rank 1 trains is rank 0's
            oom_in_backward(self.model, options["oom_above"])
            hooked.add(id(self))
        if self.rank == options.get("fault_rank") and self.progress.global_step + 1 == options["fault_step"]:
            if options["fault"] == "hang":
                # Stuck for good: torchrun's SIGTERM, once rank 0 has failed, ends it at once (a rank stuck in
                # native code would be killed 30 s later instead; that reaping is torchrun's, not ours).
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                time.sleep(3600)
            raise RuntimeError(f"injected failure on rank {self.rank} at step {options['fault_step']}")
        losses = original(self, group)
        if self.rank == 0 and options.get("losses"):
            with open(options["losses"], "a", encoding="utf-8") as f:
                f.write(json.dumps(losses) + "\n")
        return losses

    return step


def _slow_rank0(seconds: float, original: Callable) -> Callable:
    """`original`, after `seconds` of sleep on rank 0 (for good, SIGTERM ending it, when `seconds` < 0)."""

    def slow(*args: Any, **kw: Any) -> Any:
        if os.environ.get("RANK") == "0":
            if seconds < 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                time.sleep(3600)
            time.sleep(seconds)
        return original(*args, **kw)

    return slow


@contextlib.contextmanager
def harness(options: dict[str, Any]) -> Iterator[None]:
    """`model`: build this config and tokenizer (a JSON file) instead of a new model, or `model_rank<r>` on
    rank r; `losses`: rank 0 appends each step's losses (the mean over ranks) as a JSON line; `fault`
    ("crash" | "hang") on `fault_rank` at `fault_step`; `oom_rank`: that rank's back-propagation runs out of
    memory in micro-batches above `oom_above` samples (train_helpers.oom_in_backward); `slow_cache_s`: rank 0
    builds the cache that many seconds late; `stuck_saving`: rank 0 never finishes writing the first epoch's
    checkpoint."""
    with contextlib.ExitStack() as stack:
        if options.get("model"):
            pinned = _pinned_model(options)
            stack.enter_context(mock.patch.object(train_main, "create_model", pinned))
        stack.enter_context(mock.patch.object(Trainer, "step", _instrumented_step(options)))
        if options.get("slow_cache_s"):
            slow = _slow_rank0(options["slow_cache_s"], train_main.build_cache)
            stack.enter_context(mock.patch.object(train_main, "build_cache", slow))
        if options.get("stuck_saving"):
            stuck = _slow_rank0(-1, CheckpointManager.save_epoch)
            stack.enter_context(mock.patch.object(CheckpointManager, "save_epoch", stuck))
        yield


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dress only: 36 training triplets, and a validation gallery of 23 (odd: sharding pads it)."""
    root = make_demo_data(tmp_path_factory.mktemp("ddp_demo"), images=276, seed=0, image_size=64)
    captions = root / "captions" / "cap.dress.train.json"
    captions.write_text(json.dumps(json.loads(captions.read_text())[:TRAIN_TRIPLETS]))
    return root


@pytest.fixture(scope="module")
def padded_data(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same data with 35 training triplets: 2 ranks get 18 each, one of them a repeat."""
    root = tmp_path_factory.mktemp("ddp_padded") / "data"
    shutil.copytree(data, root)
    captions = root / "captions" / "cap.dress.train.json"
    captions.write_text(json.dumps(json.loads(captions.read_text())[:PADDED_TRIPLETS]))
    return root


@pytest.fixture(scope="module")
def padded_args(cli_args: list[str], data: Path, padded_data: Path) -> list[str]:
    return [a.replace(str(data), str(padded_data)) for a in cli_args]


@pytest.fixture(scope="module")
def cli_args(data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [
        "--path-file",
        str(data),
        "--path-folder",
        str(data / "images"),
        "--categories",
        "dress",
        "--preset",
        "tiny",
        "--no-pretrained",
        "--gradient-accumulation",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--cache-dir",
        str(tmp_path_factory.mktemp("ddp_cache")),
    ]


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """torchrun with 2 CPU ranks on a free local port; stdout and stderr together."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The run's output once it exits. Past `timeout` it is stopped with SIGTERM, after which torchrun ends
    its workers (killing torchrun alone would leave them running), and the test fails."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=60)
        proc.kill()
        raise


def torchrun(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    with spawn(*args, env=env) as proc:
        out = finish(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def run_harness(options: dict[str, Any], args: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return torchrun(__file__, json.dumps(options), *args, **kw)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


@pytest.fixture(scope="module")
def models(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Model files for the harness: the tiny preset with dropout 0 ("no_dropout"), and the same with a
    smaller vocabulary ("other_vocab") for rank 1, which must be replaced by rank 0's model."""
    cfg = TrainConfig(path_file=str(data), path_folder=str(data / "images"), categories=("dress",))
    texts = load_training_data(cfg, lambda *_: None).train_texts()
    model = create_model("tiny", texts, pretrained=False)
    other = TextTokenizer.train_wordpiece(texts, model.tokenizer.vocab_size - 20, model.config.max_text_len)
    assert other.vocab_size != model.tokenizer.vocab_size
    folder = tmp_path_factory.mktemp("models")
    variants = {
        "no_dropout": ({**model.config.to_dict(), "dropout": 0.0}, model.tokenizer),
        "other_vocab": (
            {**model.config.to_dict(), "dropout": 0.0, "text": {**model.config.text, "vocab_size": other.vocab_size}},
            other,
        ),
    }
    for name, (config, tokenizer) in variants.items():
        (folder / f"{name}.json").write_text(json.dumps({"config": config, "tokenizer": tokenizer.to_json()}))
    return {name: str(folder / f"{name}.json") for name in variants}


@pytest.fixture(scope="module")
def ddp_pinned(cli_args, models, tmp_path_factory) -> Path:
    """2 ranks x batch 4, global negatives, 2 epochs; per-step losses in losses.jsonl. Rank 1 builds a
    model with another vocabulary."""
    out = tmp_path_factory.mktemp("ddp_pinned")
    options = {"model": models["no_dropout"], "model_rank1": models["other_vocab"], "losses": str(out / "losses.jsonl")}
    ok(
        run_harness(
            options,
            [
                "train",
                *cli_args,
                "--batch",
                str(BATCH),
                "--epochs",
                "2",
                "--global-negatives",
                "--output-dir",
                str(out),
            ],
        )
    )
    return out


def reference_args(cli_args: list[str], out: Path) -> list[str]:
    return [
        "train",
        *cli_args,
        "--batch",
        str(BATCH),
        "--epochs",
        "2",
        "--global-negatives",
        "--save-every-steps",
        "1",
        "--output-dir",
        str(out),
    ]


@pytest.fixture(scope="module")
def ddp_reference(padded_args, tmp_path_factory) -> Path:
    """The uninterrupted run of the unchanged CLI (dropout on) on the padded data, a checkpoint after every
    step."""
    out = tmp_path_factory.mktemp("ddp_reference")
    ok(torchrun("-m", "fashionrec", *reference_args(padded_args, out)))
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    """In-process runs use one intra-op thread, as each torchrun worker does (OMP_NUM_THREADS=1): on a busy
    two-core machine more threads oversubscribe the cores and a run takes ten times longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_losses(path: Path) -> list[float]:
    return [x for line in path.read_text().splitlines() for x in json.loads(line)]


# ---- tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 5, 23, 24])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_validation_shards_cover_every_item_once_in_order(count: int, world: int):
    items = list(range(count))
    settings = [EvalSettings(device=torch.device("cpu"), rank=r, world_size=world) for r in range(world)]
    shards = [shard(items, s) for s in settings]
    assert [x for s in shards for x in s] == items
    assert all(len(s) <= -(-count // world) for s in shards)  # what gather_shards pads every shard to


def test_ddp_with_global_negatives_follows_the_single_process_loss_trajectory(
    ddp_pinned, cli_args, models, tmp_path, one_thread
):
    losses = tmp_path / "losses.jsonl"
    with harness({"model": models["no_dropout"], "losses": str(losses)}):
        code = main(["train", *cli_args, "--batch", str(2 * BATCH), "--epochs", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    single, ddp = read_losses(losses), read_losses(ddp_pinned / "losses.jsonl")
    assert len(single) == len(ddp) == 2 * 5  # 5 micro-batches per epoch, 3 optimizer steps
    assert single == pytest.approx(ddp, rel=1e-5, abs=1e-6)
    a, b = load(final_checkpoint(tmp_path)), load(final_checkpoint(ddp_pinned))
    assert a["train_losses"] == pytest.approx(b["train_losses"], rel=1e-5)
    assert (a["world_size"], b["world_size"]) == (1, 2)


def test_sharded_validation_equals_single_process_metric_of_the_same_checkpoint(ddp_pinned, one_thread):
    events = [json.loads(line) for line in (ddp_pinned / "training_log.jsonl").read_text().splitlines()]
    sharded = [e["metrics"] for e in events if e["event"] == "epoch"]
    assert len(sharded) == 2
    cfg = checkpoint_format.read(final_checkpoint(ddp_pinned)).train_config
    data = load_training_data(TrainConfig.from_dict(cfg), lambda *_: None)
    assert len(data.val_splits["dress"].gallery) % 2 == 1  # the second rank's shard is padded
    settings = EvalSettings(device=torch.device("cpu"), batch_size=BATCH, seed=cfg["seed"])
    for epoch, metrics in enumerate(sharded, start=1):
        path = next(ddp_pinned.glob(f"optimized_model_epoch_{epoch}_recall_*.pt"))
        model = load_model(path)
        cache = build_cache(TrainConfig.from_dict(cfg), data, model.config.preprocess_config())
        single = evaluate(model, data.val_splits, cache, settings)
        assert single.keys() == metrics.keys()
        for name, values in single.items():
            assert values == pytest.approx(metrics[name], abs=1e-9), (epoch, name)


def test_ddp_checkpoint_holds_every_ranks_rng_state_and_sampler_position(ddp_reference):
    ckpt = load(ddp_reference / "optimized_model_epoch_1_step_1.pt")
    states = ckpt["rng_state_per_rank"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])
    assert torch.equal(ckpt["rng_state"]["torch"], states[0]["torch"])
    assert ckpt["world_size"] == ckpt["data_order"]["world_size"] == 2
    assert (ckpt["epoch"], ckpt["samples_in_epoch"], ckpt["data_order"]["samples_in_epoch"]) == (0, 8, 8)


def test_sigterm_makes_every_rank_exit_143_after_one_step_and_resume_is_bit_identical(
    ddp_reference, padded_args, tmp_path
):
    """torchrun passes SIGTERM on to every rank; they agree on the step to stop after, rank 0 saves it, and
    each rank's own process exits with 143. The resume from that mid-epoch checkpoint, on the same 2 ranks,
    ends bit-identical to the uninterrupted run."""
    statuses = tmp_path / "exit"
    statuses.mkdir()
    out_dir = tmp_path / "run"
    with spawn(str(EXIT_STATUS), str(statuses), *reference_args(padded_args, out_dir)) as proc:
        first_step, deadline = out_dir / "optimized_model_epoch_1_step_1.pt", time.monotonic() + 180
        while not first_step.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc, 120)
    assert "received signal 15" in out and "stopped in epoch" in out, out[-3000:]
    assert {p.name: p.read_text() for p in statuses.iterdir()} == {"rank0.exit": "143", "rank1.exit": "143"}
    assert not list(out_dir.glob("final_*.pt"))
    resumed = ok(torchrun("-m", "fashionrec", "resume", "--checkpoint", str(out_dir), *padded_args))
    assert re.search(r"\b\d+ samples into epoch 1\b", resumed.stdout) and "warning" not in resumed.stdout
    assert_same_training(final_checkpoint(ddp_reference), final_checkpoint(out_dir))


def test_resume_on_another_world_size_warns_that_data_order_changes(
    ddp_reference, padded_args, tmp_path, capsys, one_thread
):
    start = ddp_reference / "optimized_model_epoch_1_step_2.pt"
    code = main(
        ["resume", "--checkpoint", str(start), *padded_args, "--output-dir", str(tmp_path), "--stop-after-epochs", "1"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "checkpoint was written by 2 ranks, resuming on 1" in out and "data order" in out
    assert "32 samples into epoch 1" in out  # 16 per rank x 2 ranks, now on one
    resumed = load(next(tmp_path.glob("resumed_model_epoch_1_recall_*.pt")))
    assert (resumed["epoch"], resumed["world_size"]) == (1, 1)


def test_a_crashing_rank_ends_the_whole_job_with_its_error(cli_args, tmp_path):
    losses = tmp_path / "losses.jsonl"
    options = {"fault": "crash", "fault_rank": 1, "fault_step": 2, "losses": str(losses)}
    args = ["train", *cli_args, "--batch", str(BATCH), "--epochs", "2", "--output-dir", str(tmp_path)]
    start = time.monotonic()
    proc = run_harness(options, args, timeout=180)
    assert proc.returncode != 0
    assert "[rank1]: RuntimeError: injected failure on rank 1 at step 2" in proc.stdout
    assert "FAILED" in proc.stdout  # torchrun's summary of the failed ranks
    assert len(read_losses(losses)) == 2  # the first step (2 micro-batches) ran on both ranks
    assert time.monotonic() - start < 150


def test_a_hung_rank_makes_the_others_time_out_instead_of_waiting_forever(cli_args, tmp_path):
    losses = tmp_path / "losses.jsonl"
    options = {"fault": "hang", "fault_rank": 1, "fault_step": 2, "losses": str(losses)}
    args = ["train", *cli_args, "--batch", str(BATCH), "--epochs", "2", "--output-dir", str(tmp_path)]
    start = time.monotonic()
    proc = run_harness(options, args, env={"FASHIONREC_DIST_TIMEOUT_S": "6"}, timeout=180)
    assert proc.returncode != 0
    assert "Timed out" in proc.stdout or "timed out" in proc.stdout, proc.stdout[-3000:]
    assert len(read_losses(losses)) == 2  # it timed out waiting in step 2, not earlier
    assert time.monotonic() - start < 150


@pytest.mark.slow
def test_oom_on_one_rank_makes_every_rank_fall_back_and_accumulated_negatives_keep_the_objective(
    cli_args, models, tmp_path, one_thread
):
    """2 ranks x 2 micro-batches of 2 with global and accumulated negatives: each step's InfoNCE is over
    the 8 samples a single process at batch 8 sees. Rank 1 runs out of memory in its first micro-batch's
    backward; both ranks halve the micro-batch, and the loss trajectory still equals the single process's."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    common = [*cli_args, "--epochs", "1", "--accumulate-negatives"]
    options = {"model": models["no_dropout"], "losses": str(ddp / "losses.jsonl"), "oom_rank": 1, "oom_above": 1}
    ddp_args = ["--batch", "2", "--gradient-accumulation", "2", "--global-negatives", "--output-dir", str(ddp)]
    proc = ok(run_harness(options, ["train", *common, *ddp_args], env={"FASHIONREC_DIST_TIMEOUT_S": "60"}))
    assert (
        "CUDA out of memory at micro-batch 2 on rank 1: continuing with micro-batch 1 and 2x the accumulation "
        "(the same samples per optimizer step); the objective is unchanged: with --accumulate-negatives every "
        "query is still contrasted with all 8 targets of the step" in proc.stdout
    )
    assert load(final_checkpoint(ddp))["micro_splits"] == 2

    with harness({"model": models["no_dropout"], "losses": str(single / "losses.jsonl")}):
        args = [*common, "--batch", "8", "--gradient-accumulation", "1", "--output-dir", str(single)]
        assert main(["train", *args]) == 0
    expected = read_losses(single / "losses.jsonl")
    assert len(expected) == 5  # one loss per optimizer step: 36 triplets in steps of 8
    assert read_losses(ddp / "losses.jsonl") == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_oom_where_the_ranks_cannot_retry_together_stops_the_job_with_what_to_change(cli_args, models, tmp_path):
    """Plain accumulation with one micro-batch per step: rank 1 runs out of memory in the backward whose
    gradients DDP exchanges, while rank 0 waits in that exchange. The job ends soon, not at the timeout."""
    options = {"model": models["no_dropout"], "oom_rank": 1, "oom_above": 2}
    args = ["train", *cli_args, "--batch", "4", "--gradient-accumulation", "1", "--epochs", "1"]
    start = time.monotonic()
    proc = run_harness(options, [*args, "--output-dir", str(tmp_path)], env={"FASHIONREC_DIST_TIMEOUT_S": "600"})
    assert proc.returncode != 0
    assert "error: out of memory on rank 1 in a micro-batch of 4" in proc.stdout, proc.stdout[-3000:]
    assert "the job stops. Restart or resume with --batch 2" in proc.stdout
    assert time.monotonic() - start < 150


def test_rank0_slow_work_outlasts_the_collective_timeout_and_a_stuck_rank0_ends_the_job(cli_args, tmp_path):
    """Rank 0 builds the cache 6 s late while rank 1 waits (the collective timeout is 3 s): training goes
    on. Then rank 0 never finishes writing the first checkpoint: rank 1 gives up after the 12 s wait
    timeout and the job ends."""
    losses = tmp_path / "losses.jsonl"
    options = {"slow_cache_s": 6, "stuck_saving": True, "losses": str(losses)}
    args = ["train", *cli_args, "--batch", str(BATCH), "--epochs", "2", "--output-dir", str(tmp_path)]
    env = {"FASHIONREC_DIST_TIMEOUT_S": "3", "FASHIONREC_DIST_WAIT_TIMEOUT_S": "12"}
    start = time.monotonic()
    proc = run_harness(options, args, env=env, timeout=180)
    assert proc.returncode != 0
    assert len(read_losses(losses)) == 5  # the whole first epoch trained after the late cache
    assert "[rank1]:" in proc.stdout and "timed out" in proc.stdout.lower(), proc.stdout[-3000:]
    assert not list(tmp_path.glob("*.pt"))
    assert time.monotonic() - start < 150


if __name__ == "__main__":
    with harness(json.loads(sys.argv[1])):
        raise SystemExit(main(sys.argv[2:]))
