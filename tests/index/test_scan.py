from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.errors import UserError
from fashionrec.index.scan import scan_images


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_ids_are_relative_paths_without_extension(tmp_path: Path) -> None:
    for name in [
        "b.JPG",
        "a.png",
        "dress/c.webp",
        "dress/deep/d.jpeg",
        "notes.txt",
        ".hidden/e.jpg",
        "dress/.f.png",
        "index/g.png",
    ]:
        touch(tmp_path / name)
    found = scan_images(tmp_path, skip=tmp_path / "index")
    assert found == {
        "a": tmp_path / "a.png",
        "b": tmp_path / "b.JPG",
        "dress/c": tmp_path / "dress/c.webp",
        "dress/deep/d": tmp_path / "dress/deep/d.jpeg",
    }


def test_two_files_with_one_id_are_refused(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "a.jpg")
    with pytest.raises(UserError, match="would both get the id 'a'"):
        scan_images(tmp_path)


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="images folder not found: .*nope$"):
        scan_images(tmp_path / "nope")
