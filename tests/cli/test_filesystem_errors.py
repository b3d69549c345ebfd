"""Filesystem errors are one line naming the path, exit code 2, and nothing saved before is lost."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashionrec.cli.main import main


@pytest.fixture
def tiny_args(small_data: Path, cache_dir: Path) -> list[str]:
    return [
        "train", "--path-file", str(small_data), "--path-folder", str(small_data / "images"), "--categories", "dress",
        "--preset", "tiny", "--batch", "8", "--num-workers", "0", "--cache-dir", str(cache_dir), "--epochs", "1",
    ]  # fmt: skip


def mount_tmpfs(folder: Path, *options: str) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"CI needs root to mount a small filesystem: {done.stderr.decode()}")
        pytest.skip("mounting a small filesystem needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mount_tmpfs(tmp_path / "full", "size=64k")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    yield from mount_tmpfs(tmp_path / "ro", "ro,size=64k")


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    """The error line (progress bars may come before it on stderr)."""
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    last = err.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert last.startswith("error: ") and err.endswith("\n"), err
    return last


def test_output_dir_that_is_a_file(tiny_args, tmp_path, capsys):
    target = tmp_path / "checkpoints"
    target.write_text("my notes")
    assert main([*tiny_args, "--output-dir", str(target)]) == 2
    assert one_line_error(capsys) == f"error: argument --output-dir: output folder {target} is a file, not a folder"
    assert target.read_text() == "my notes"


def test_read_only_output_folder(tiny_args, read_only, capsys):
    assert main([*tiny_args, "--output-dir", str(read_only / "run")]) == 2
    err = one_line_error(capsys)
    assert str(read_only / "run") in err and "Read-only file system" in err


@pytest.mark.slow
def test_disk_full_at_a_save_loses_nothing(tiny_args, full_disk, capsys):
    (full_disk / "notes.txt").write_text("keep me")
    assert main([*tiny_args, "--output-dir", str(full_disk)]) == 2
    err = one_line_error(capsys)
    assert "No space left on device" in err and str(full_disk) in err
    assert (full_disk / "notes.txt").read_text() == "keep me"
    assert not list(full_disk.glob(".*.tmp")) and not list(full_disk.glob("*.pt"))
