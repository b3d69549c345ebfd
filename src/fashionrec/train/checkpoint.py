"""The checkpoint manager: the one place that names, writes, prunes and finds checkpoint files (what is
inside them, and reading them back, is `fashionrec.model.checkpoint_format`'s).

File names (prefix `optimized_model` for `train`, `resumed_model` for `resume`):
  {prefix}_epoch_{E}_recall_{R:.4f}.pt     end of epoch E (E epochs complete)
  {prefix}_epoch_{E}_step_{S}.pt           inside epoch E, after S of its optimizer steps
  best_{prefix}_recall_{R:.4f}.pt          best validation Recall@10 so far (replaced only by a better one);
  best_{prefix}_{protocol}_recall_...pt    the same, measured with another protocol than the standard one
  final_{prefix}_epoch_{E}_recall_{R:.4f}.pt
The original system's plain train.py named its epoch files `model_epoch_{E}_recall_{R:.4f}.pt`: folders of
them are searched too.
Every write is atomic (temp file, fsync, rename, fsync of the folder): a crash mid-save leaves the previous
files intact."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionrec.errors import UserError
from fashionrec.model import checkpoint_format
from fashionrec.model.checkpoint_format import Checkpoint

TRAIN_PREFIX = "optimized_model"
RESUME_PREFIX = "resumed_model"

EPOCH_RE = re.compile(r"^(?P<prefix>(?:\w+?_)?model)_epoch_(?P<epoch>\d+)_recall_(?P<recall>[\d.]+)\.pt$")
STEP_RE = re.compile(r"^(?P<prefix>(?:\w+?_)?model)_epoch_(?P<epoch>\d+)_step_(?P<step>\d+)\.pt$")


@dataclass(frozen=True)
class Periodic:
    """A periodic checkpoint file and its place in training: (epochs complete, steps into the next epoch)."""

    path: Path
    prefix: str
    progress: tuple[int, int]


def parse_periodic(path: Path) -> Periodic | None:
    if m := EPOCH_RE.match(path.name):
        if m["prefix"].startswith(("best_", "final_")):
            return None
        return Periodic(path, m["prefix"], (int(m["epoch"]), 0))
    if m := STEP_RE.match(path.name):
        # Named after the epoch in progress (1-based), so it sits after the previous epoch's end.
        return Periodic(path, m["prefix"], (int(m["epoch"]) - 1, int(m["step"])))
    return None


def periodic_checkpoints(directory: Path) -> list[Periodic]:
    """Oldest first, by training progress, then modification time."""
    found = [p for p in (parse_periodic(f) for f in directory.glob("*.pt")) if p is not None]
    return sorted(found, key=lambda p: (p.progress, p.path.stat().st_mtime_ns))


def load_checkpoint(target: str | Path, log=print, text_model: str | None = None) -> Checkpoint:
    """A checkpoint file, or the newest checkpoint in a folder that loads cleanly (older ones are tried
    in turn when the newest is truncated, corrupt or fails its digest, and the fallback is reported).
    `text_model`: where bert-base-uncased's vocabulary is, for the original system's files."""
    target = Path(target)
    if not target.exists():
        raise UserError(f"Checkpoint not found: {target}")
    if target.is_file():
        return checkpoint_format.read(target, text_model=text_model)
    candidates = [p.path for p in reversed(periodic_checkpoints(target))]
    candidates += sorted(target.glob("final_*.pt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    if not candidates:
        raise UserError(f"Checkpoint not found: no checkpoint files in {target}")
    for path in candidates:
        try:
            return checkpoint_format.read(path, text_model=text_model)
        except UserError as e:
            log(f"warning: skipping unreadable checkpoint ({e}); falling back to the previous one")
    raise UserError(f"no checkpoint in {target} loads cleanly")


class CheckpointManager:
    """Writes one run's checkpoints into `directory`. `protected` files (the checkpoint a resumed run
    started from) are never overwritten or deleted."""

    def __init__(self, directory: str | Path, prefix: str, keep_last: int = 0, protected: Path | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.keep_last = keep_last
        self.protected = {protected.resolve()} if protected else set()
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """Temp files of a write that was killed (checkpoints, links, logs, plots): never valid, safe to drop."""
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def _write(self, state: dict[str, Any], name: str) -> Path:
        path = self.directory / name
        if path.resolve() in self.protected:
            raise UserError(f"refusing to overwrite the checkpoint this run started from: {path}")
        checkpoint_format.write(path, state)
        return path

    def save_epoch(self, state: dict[str, Any], epoch: int, recall: float) -> Path:
        path = self._write(state, f"{self.prefix}_epoch_{epoch}_recall_{recall:.4f}.pt")
        self.prune()
        return path

    def save_step(self, state: dict[str, Any], epoch_in_progress: int, step: int) -> Path:
        path = self._write(state, f"{self.prefix}_epoch_{epoch_in_progress}_step_{step}.pt")
        self.prune()
        return path

    def _link_or_copy(self, source: Path, name: str) -> Path:
        """Best and final files are the same bytes as a periodic file: a hard link costs no write."""
        dest = self.directory / name
        if dest.resolve() in self.protected:
            raise UserError(f"refusing to overwrite the checkpoint this run started from: {dest}")
        tmp = self.directory / f".{name}.link.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
        return dest

    def save_best(self, source: Path, recall: float, protocol_tag: str = "") -> Path:
        """Replace this run's previous best file of the same validation protocol with a better one
        (`protocol_tag`: empty for the standard protocol, else the protocol's name)."""
        stem = f"best_{self.prefix}_{protocol_tag}_recall_" if protocol_tag else f"best_{self.prefix}_recall_"
        dest = self._link_or_copy(source, f"{stem}{recall:.4f}.pt")
        for old in self.directory.glob(f"{stem}*.pt"):
            if old != dest and old.resolve() not in self.protected:
                old.unlink()
        return dest

    def save_final(self, source: Path, epoch: int, recall: float) -> Path:
        return self._link_or_copy(source, self._final_name(epoch, recall))

    def save_final_state(self, state: dict[str, Any], epoch: int, recall: float) -> Path:
        """A final file of its own, when its recall differs from the last epoch's (fast validation)."""
        return self._write(state, self._final_name(epoch, recall))

    def _final_name(self, epoch: int, recall: float) -> str:
        return f"final_{self.prefix}_epoch_{epoch}_recall_{recall:.4f}.pt"

    def prune(self) -> None:
        """Keep the newest `keep_last` periodic checkpoints of this run's prefix; never best or final."""
        if self.keep_last <= 0:
            return
        mine = [p for p in periodic_checkpoints(self.directory) if p.prefix == self.prefix]
        for old in mine[: max(len(mine) - self.keep_last, 0)]:
            if old.path.resolve() not in self.protected:
                old.path.unlink(missing_ok=True)
