"""Shared command-line options: one definition per flag, the same checks in every command."""

from __future__ import annotations

import pytest

from fashionrec.cli.main import build_parser, main
from fashionrec.options import DEFAULT_CACHE_DIR
from fashionrec.train.params import CHANGEABLE, TrainConfig, config_from_args


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0.001", "-1e-3", "abc"])
@pytest.mark.parametrize("joined", [False, True])
def test_lr_must_be_a_finite_positive_number(value, joined, tmp_path, capsys):
    """`--lr -1e-3` and `--lr=-1e-3` alike reach the check (argparse alone reads -1e-3 as a flag)."""
    lr = [f"--lr={value}"] if joined else ["--lr", value]
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--path-file", str(tmp_path), "--path-folder", str(tmp_path), *lr])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --lr: ") and err.count("\n") == 1 and value in err


@pytest.mark.parametrize("command", ["train", "evaluate", "index"])
def test_every_command_spells_and_defaults_the_shared_flags_alike(command, tmp_path, capsys):
    folder = str(tmp_path)
    required = {
        "train": ["--path-file", folder, "--path-folder", folder],
        "evaluate": ["--checkpoint", folder, "--path-file", folder, "--path-folder", folder],
        "index": ["--checkpoint", folder, "--images", folder, "--out", str(tmp_path / "o")],
    }[command]
    args = build_parser().parse_args([command, *required])
    assert args.cache_dir == DEFAULT_CACHE_DIR and args.device == "auto" and args.batch == 64
    assert capsys.readouterr().err == ""
    again = build_parser().parse_args([command, *required, "--batch-size", "7"])  # the old spelling still works
    assert again.batch == 7
    assert capsys.readouterr().err == "note: --batch-size is the old spelling of --batch\n"


def test_resume_may_change_only_the_settings_marked_changeable():
    assert {"epochs", "batch", "lr", "device", "threads", "output_dir"} <= CHANGEABLE
    assert not {"preset", "seed", "categories", "crop", "landmarks", "weight_decay", "val_split"} & CHANGEABLE
    assert CHANGEABLE <= {f for f in TrainConfig.__dataclass_fields__}


def test_a_cuda_device_without_cuda_is_one_line(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "c.pt").write_bytes(b"never read: the device is checked first")
    code = main(["evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--path-file", str(tmp_path),
                 "--path-folder", str(tmp_path), "--device", "cuda:0"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == "error: --device cuda:0: CUDA is not available on this machine\n"


def test_the_paper_preset_trains_with_landmarks_and_the_crop_by_default():
    paper = TrainConfig(preset="paper")
    assert paper.landmarks == "mediapipe" and paper.crop == "foreground"
    assert TrainConfig(preset="tiny").landmarks == "none"
    assert TrainConfig(preset="paper", landmarks="none").landmarks == "none"  # the flag turns them off


def test_the_original_preset_trains_with_its_own_landmark_detector():
    assert TrainConfig(preset="original").landmarks == "original"
    assert TrainConfig(preset="original", landmarks="none").landmarks == "none"


def test_speed_flags_are_off_by_default(tmp_path):
    """README: fp32, every validation query and no compilation, unless --mixed-precision, --fast-validation or
    --compile is given."""
    folders = ["--path-file", str(tmp_path), "--path-folder", str(tmp_path)]
    default = config_from_args(build_parser().parse_args(["train", *folders]))
    assert (default.mixed_precision, default.fast_validation, default.compile) == (False, False, False)
    given = ["--mixed-precision", "--fast-validation", "--compile"]
    on = config_from_args(build_parser().parse_args(["train", *folders, *given]))
    assert (on.mixed_precision, on.fast_validation, on.compile) == (True, True, True)
