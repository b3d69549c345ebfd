"""docs/resume.md's promises for a resume that changes the plan, checked on the run itself (in-process
`main()` calls): the epoch in progress keeps its data order under another --batch, the continuation
schedule starts at the LR in force (no jump) and ends at its end LR, AdamW's beta1 moves with it as in
OneCycleLR's cycle, and resuming a continuation again is bit-exact."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from train_helpers import assert_same_training, final_checkpoint, load, run_main

from fashionrec.cli.main import main
from fashionrec.train import trainer as trainer_module
from fashionrec.train.schedule import continuation_beta1, continuation_lr

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

TRIPLETS = 90  # small_data's dress training triplets
START = "optimized_model_epoch_2_step_2.pt"  # 2 steps x 2 micro-batches x 8 = 32 samples into epoch 2
RESUMED_BATCH = 5


@contextlib.contextmanager
def data_order() -> Iterator[dict[int, list[int]]]:
    """{epoch: dataset indices in the order training consumed them}, recorded from the real loaders."""
    seen: dict[int, list[int]] = {}
    real = trainer_module.make_loader

    def make_loader(dataset, sampler, cfg, epoch):
        loader = real(dataset, sampler, cfg, epoch)

        def batches():
            for batch in loader:
                seen.setdefault(epoch, []).extend(batch["index"].tolist())
                yield batch

        return batches()

    with mock.patch.object(trainer_module, "make_loader", make_loader):
        yield seen


def with_batch(args: list[str], batch: int) -> list[str]:
    i = args.index("--batch")
    return [*args[: i + 1], str(batch), *args[i + 2 :]]


def events(directory: Path, kind: str) -> list[dict]:
    lines = (directory / "training_log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def lr_of(path: Path) -> float:
    return load(path)["optimizer_state_dict"]["param_groups"][0]["lr"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_args) -> tuple[Path, dict[int, list[int]]]:
    """3 epochs at batch 8, a checkpoint after every step, and the data order it trained on."""
    out = tmp_path_factory.mktemp("reference")
    with data_order() as order:
        assert main(["train", *train_args, "--epochs", "3", "--save-every-steps", "1", "--output-dir", str(out)]) == 0
    assert sorted(order) == [0, 1, 2] and all(sorted(ix) == list(range(TRIPLETS)) for ix in order.values())
    return out, order


@pytest.fixture(scope="module")
def extended(reference, tmp_path_factory, train_args) -> tuple[Path, dict[int, list[int]]]:
    """Resumed 32 samples into epoch 2 with --batch 5 and --epochs 4: a continuation schedule."""
    out = tmp_path_factory.mktemp("extended")
    shutil.copy(reference[0] / START, out / START)
    args = with_batch(train_args, RESUMED_BATCH)
    with data_order() as order:
        code = main(["resume", "--checkpoint", str(out / START), *args, "--epochs", "4", "--save-every-steps", "1"])
    assert code == 0
    return out, order


def test_another_batch_size_keeps_the_data_order_of_the_epoch_in_progress(reference, extended):
    ref_order, order = reference[1], extended[1]
    assert load(reference[0] / START)["samples_in_epoch"] == 32
    assert order[1] == ref_order[1][32:]  # the run continues at the same sample
    assert order[2] == ref_order[2]  # and later epochs keep theirs
    assert len(order[3]) == TRIPLETS


def test_continuation_starts_at_the_saved_lr_and_ends_at_its_end_lr(reference, extended):
    out = extended[0]
    saved_lr = lr_of(reference[0] / START)
    (resume,) = events(out, "resume")
    spec = resume["schedule"]
    # 58 samples left of epoch 2 at batch 5 = 12 micro-batches = 6 steps; epochs 3 and 4: 18 -> 9 steps each.
    assert (spec["kind"], spec["start_step"], spec["total_steps"], spec["warmup_steps"]) == ("continuation", 8, 24, 0)
    assert resume["lr"] == pytest.approx(saved_lr, rel=1e-12) == spec["start_lr"]  # no jump at the resume point
    assert spec["end_lr"] == pytest.approx(spec["peak_lr"] / (25 * 1e4), rel=1e-12)
    steps = sorted(out.glob("resumed_model_epoch_*_step_*.pt"), key=lambda p: load(p)["global_step"])
    assert len(steps) == 24 - 3  # no step file at an epoch's end
    lrs = [saved_lr]
    for path in steps:
        ckpt = load(path)
        lrs.append(lr_of(path))
        assert lrs[-1] == pytest.approx(continuation_lr(spec, ckpt["global_step"] - 8), rel=1e-12)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # warm-up was over: annealing only
    for epoch in events(out, "epoch"):
        ckpt = load(Path(epoch["checkpoint"]))
        assert epoch["lr"] == pytest.approx(continuation_lr(spec, ckpt["global_step"] - 8), rel=1e-12)
    final = load(final_checkpoint(out, "resumed"))
    assert (final["epoch"], final["global_step"]) == (4, 8 + 24)
    assert lr_of(final_checkpoint(out, "resumed")) == pytest.approx(spec["end_lr"], rel=1e-12)


def beta1_of(path: Path) -> float:
    return load(path)["optimizer_state_dict"]["param_groups"][0]["betas"][0]


def test_the_continuation_moves_beta1_with_its_lr(reference, extended):
    """Not frozen where the saved optimizer left it: from the beta1 in force at the resume point (OneCycleLR's,
    part-way back to 0.95) up to 0.95 at the last step, as the LR anneals."""
    out = extended[0]
    spec = events(out, "resume")[0]["schedule"]
    assert spec["start_beta1"] == beta1_of(reference[0] / START) == events(out, "resume")[0]["beta1"]
    steps = sorted(out.glob("resumed_model_epoch_*_step_*.pt"), key=lambda p: load(p)["global_step"])
    betas = [beta1_of(reference[0] / START)] + [beta1_of(path) for path in steps]
    for path in steps:
        assert beta1_of(path) == pytest.approx(continuation_beta1(spec, load(path)["global_step"] - 8), rel=1e-12)
    assert all(a < b for a, b in zip(betas, betas[1:], strict=False)) and 0.85 < betas[0] < 0.95
    assert beta1_of(final_checkpoint(out, "resumed")) == pytest.approx(0.95, rel=1e-12)


def test_the_last_step_of_a_onecycle_run_uses_max_lr_over_25e4(reference):
    # The LR in force for step 18 (of 18) is in the checkpoint of step 17, the last inside epoch 3.
    assert load(reference[0] / "optimized_model_epoch_3_step_5.pt")["global_step"] == 17
    assert lr_of(reference[0] / "optimized_model_epoch_3_step_5.pt") == pytest.approx(3e-4 / (25 * 1e4), rel=1e-12)


@pytest.mark.parametrize("start", ["resumed_model_epoch_3_recall_*.pt", "resumed_model_epoch_4_step_3.pt"])
def test_resuming_a_continuation_schedule_again_is_exact(extended, train_args, tmp_path, capsys, start):
    source = next(extended[0].glob(start))
    shutil.copy(source, tmp_path / source.name)
    args = with_batch(train_args, RESUMED_BATCH)
    code, out, _ = run_main(capsys, "resume", "--checkpoint", str(tmp_path / source.name), *args, "--epochs", "4")
    assert code == 0 and "schedule kept as saved" in out
    assert_same_training(final_checkpoint(extended[0], "resumed"), final_checkpoint(tmp_path, "resumed"))
