"""What a path given by the user must be, checked in one place with one wording.

The command line checks its path options with these at parse time (through `fashionrec.options`), and the
Python API checks the same paths again with them, so a missing or misplaced file reads the same either way:
"annotations folder not found: X", "annotations folder X is a file, not a folder", ... Only the standard
library is imported, so the checks run before torch is loaded."""

from __future__ import annotations

from pathlib import Path

from fashionrec.errors import UserError


def existing_folder(path: str | Path, what: str) -> Path:
    """`path` as a Path when it is a folder; otherwise a UserError naming `what` it should have been."""
    return _existing_kind(Path(path), what, folder=True)


def existing_file(path: str | Path, what: str) -> Path:
    return _existing_kind(Path(path), what, folder=False)


def _existing_kind(path: Path, what: str, *, folder: bool) -> Path:
    if path.is_dir() if folder else path.is_file():
        return path
    if path.exists():
        kind, other = ("folder", "file") if folder else ("file", "folder")
        raise UserError(f"{what} {path} is a {other}, not a {kind}")
    raise UserError(f"{what} not found: {path}")


def existing(path: str | Path, what: str) -> Path:
    """A file or a folder (a checkpoint file, or a folder of checkpoints or a saved model)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    return path


def checkpoint_file_or_folder(path: str | Path, what: str) -> Path:
    """A checkpoint file, or a folder that holds some (`*.pt`; the newest valid one is used)."""
    path = existing(path, what)
    if path.is_dir() and not any(path.glob("*.pt")):
        raise UserError(f"no checkpoint files (*.pt) in {path}")
    return path


def folder_to_write(path: str | Path, what: str) -> Path:
    """A folder that exists or can be made: neither it nor any folder above it may be a file."""
    path = Path(path)
    for place in (path, *path.parents):
        if place.is_dir():
            return path
        if place == path and place.exists():
            raise UserError(f"{what} {path} is a file, not a folder")
        if place.exists():
            raise UserError(f"{what} {path} cannot be made: {place} is a file, not a folder")
    return path


def new_path(path: str | Path, what: str) -> Path:
    """A file to create that must not exist yet (nothing a user wrote is overwritten)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise UserError(f"{path} already exists; choose another {what} (nothing was written)")
    return path
