"""--mixed-precision (bf16 autocast on a CPU with bf16 arithmetic, fp32 elsewhere), --deterministic and --compile
keep resume exact: a run resumed mid-epoch with the same flag ends bit-identical to the uninterrupted run with
it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from train_helpers import assert_same_training, final_checkpoint, load, run_cli, run_main, save

from fashionrec.cli.main import main
from fashionrec.model import checkpoint_format
from fashionrec.train.trainer import cpu_has_native_bf16

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

START = "optimized_model_epoch_2_step_2.pt"  # 32 samples into epoch 2


def differ(a: Path, b: Path) -> bool:
    return checkpoint_format.differences(checkpoint_format.read(a), checkpoint_format.read(b)) != []


def copy_start(reference: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return Path(shutil.copy(reference / START, folder / START))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_args) -> Callable[..., Path]:
    """`reference(*flags)`: the folder of an uninterrupted 2-epoch run with `flags` (in-process, made once),
    a checkpoint after every step."""
    made: dict[tuple[str, ...], Path] = {}

    def make(*flags: str) -> Path:
        if flags not in made:
            out = tmp_path_factory.mktemp("reference")
            args = ["train", *train_args, *flags, "--epochs", "2", "--save-every-steps", "1", "--output-dir", str(out)]
            assert main(args) == 0
            made[flags] = out
        return made[flags]

    return make


@pytest.fixture
def restore_deterministic_mode() -> Iterator[None]:
    """--deterministic switches process-wide settings: give the other tests of this process theirs back."""
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.backends.cudnn.benchmark = before[1]
    if workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def test_mixed_precision_resume_is_bit_identical(reference, train_args, tmp_path, capsys):
    """On a CPU with bf16 arithmetic --mixed-precision is bf16 autocast; on one without, it trains in fp32 and
    says so in one line (bf16 there is several times slower). Either way the checkpoint records what ran, and
    a resumed run equals the uninterrupted one; a checkpoint of the other precision resumes with a warning."""
    ref, plain = reference("--mixed-precision"), reference()
    capsys.readouterr()
    code, out, _ = run_main(capsys, "resume", "--checkpoint", str(copy_start(ref, tmp_path / "same")), *train_args)
    assert code == 0 and "warning" not in out
    final = load(final_checkpoint(tmp_path / "same"))
    assert final["train_config"]["mixed_precision"] is True
    assert_same_training(final_checkpoint(ref), final_checkpoint(tmp_path / "same"))
    fallback = "note: --mixed-precision: this CPU has no native bf16 arithmetic"
    if cpu_has_native_bf16():
        assert final["precision"] == "bf16" and fallback not in out
        assert differ(final_checkpoint(ref), final_checkpoint(plain))  # bf16 autocast did run
    else:
        assert final["precision"] == "fp32" and out.count(fallback) == 1
        assert not differ(final_checkpoint(ref), final_checkpoint(plain))  # fp32: the run without the flag

    other = copy_start(ref, tmp_path / "other")  # as if written where --mixed-precision meant the other dtype
    save(other, {**load(other), "precision": "fp32" if cpu_has_native_bf16() else "bf16"})
    code, out, _ = run_main(capsys, "resume", "--checkpoint", str(other), *train_args)
    assert code == 0
    assert (
        f"warning: checkpoint was trained in {load(other)['precision']}, this run computes in {final['precision']}"
        in out
    )


def test_deterministic_resume_is_bit_identical(reference, train_args, tmp_path, restore_deterministic_mode):
    torch.use_deterministic_algorithms(False)
    ref = reference("--deterministic")
    assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    torch.use_deterministic_algorithms(False)  # the resume must switch it on by itself (the flag is saved)
    assert main(["resume", "--checkpoint", str(copy_start(ref, tmp_path)), *train_args]) == 0
    assert torch.are_deterministic_algorithms_enabled()
    assert_same_training(final_checkpoint(ref), final_checkpoint(tmp_path))
    # CPU kernels are deterministic already: the flag changes nothing on the CPU.
    assert not differ(final_checkpoint(ref), final_checkpoint(reference()))


def test_compiled_run_resumed_in_a_new_process_is_bit_identical(reference, train_args, tmp_path):
    """Micro-batches of 5 that divide the 90 triplets: one shape, so one compilation of the training step per
    process (each costs a minute on a 2-core CPU with an empty inductor cache)."""
    one_shape = [*train_args, "--batch", "10"]
    ref = tmp_path / "reference"
    run_cli("train", *one_shape, "--compile", "--epochs", "2", "--save-every-steps", "1", "--output-dir", str(ref))
    resumed = copy_start(ref, tmp_path / "resumed")
    run_cli("resume", "--checkpoint", str(resumed), *one_shape)
    assert load(final_checkpoint(resumed.parent))["train_config"]["compile"] is True
    assert_same_training(final_checkpoint(ref), final_checkpoint(resumed.parent))
    assert differ(final_checkpoint(ref), final_checkpoint(reference("--batch", "10")))  # the compiled kernels ran
