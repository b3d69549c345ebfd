"""Atomic writes: a failed write leaves the previous file as it was and names the file in its error."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import IO

import pytest

from fashionrec.atomic import atomic_write, atomic_write_text


def fail_like_a_full_disk(f: IO[bytes]) -> None:
    f.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")  # what a failed write() or flush() raises: no file name


def fail_inside_a_library(f: IO[bytes]) -> None:
    try:
        fail_like_a_full_disk(f)
    except OSError as e:
        raise RuntimeError("writer failed") from e  # as torch's zip writer reports it


@pytest.mark.parametrize("write", [fail_like_a_full_disk, fail_inside_a_library])
def test_a_failed_write_names_the_file_and_keeps_the_previous_one(tmp_path: Path, write):
    target = tmp_path / "model.pt"
    atomic_write_text(target, "previous")
    with pytest.raises(OSError) as raised:
        atomic_write(target, write)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind


def test_other_errors_pass_through_unchanged(tmp_path: Path):
    def bad(_f: IO[bytes]) -> None:
        raise ValueError("not a file problem")

    with pytest.raises(ValueError, match="not a file problem"):
        atomic_write(tmp_path / "x.bin", bad)
    assert not list(tmp_path.iterdir())
