"""The checkpoint file format, owned here alone: what a checkpoint holds, how it is written (atomically,
with a digest of its content) and read back (safely, verified, version-checked, older layouts migrated).

On disk a checkpoint is one `torch.save` dict. The original system's keys (`epoch`, `model_state_dict`,
`optimizer_state_dict`, `scheduler_state_dict`, `loss`, `recall_at_10`, `train_losses`, `val_recalls`)
come first, so its users' tools keep reading ours; the rest is what an exact resume needs. Versions:
- none: fashionrec files saved without settings, and foreign files a model family converts on reading
  (the original public system's, for the `original` preset: `model.original_format`);
- 1: fashionrec's first layout (preprocessing stored in both `train_config` and `model_config`);
- 2: preprocessing stored once, in `model_config["preprocess"]`; `content_digest`; `threads`; later files
  add `precision` (what the run computed in; older files tell it from their settings, see `Checkpoint`).

The digest covers the content (every tensor's dtype, shape and bytes, and every plain value), not the
file's bytes: hard-linked best/final files share it, and damage anywhere in the data is caught even where
torch's reader notices nothing."""

from __future__ import annotations

import hashlib
import math
import re
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fashionrec.atomic import atomic_write
from fashionrec.errors import UserError
from fashionrec.model.config import ModelConfig
from fashionrec.model.factory import FashionModel, rebuild_model
from fashionrec.model.registry import families

FORMAT_VERSION = 2
DIGEST_KEY = "content_digest"
# The training settings that are preprocessing: stored in the model config, not in the train config.
PREPROCESS_KEYS = ("crop", "landmarks", "yolo_weights", "resize")
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


@dataclass
class Progress:
    """Counters and histories that make a checkpoint resumable at any optimizer step."""

    epoch: int = 0  # epochs complete
    samples_in_epoch: int = 0  # this rank's samples already consumed in the epoch in progress
    step_in_epoch: int = 0
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    train_losses: list[float] = field(default_factory=list)
    val_recalls: list[float] = field(default_factory=list)
    val_recalls_at_50: list[float] = field(default_factory=list)
    val_protocols: list[str] = field(default_factory=list)  # the validation protocol of each val_recalls entry
    best_recall: float = -1.0
    best_protocol: str | None = None  # the protocol best_recall was measured with: only its numbers compare
    micro_splits: int = 1  # >1 after an out-of-memory error halved the micro-batch


# ---- state dicts -------------------------------------------------------------------------------------
def strip_wrappers(key: str) -> str:
    """`_orig_mod.module.x` -> `x`: the prefixes torch.compile and (Distributed)DataParallel add."""
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop torch.compile's `_orig_mod.` and DDP's `module.` prefixes so state dicts are portable."""
    return {strip_wrappers(key): value for key, value in state.items()}


def describe_mismatch(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Missing, unexpected and wrongly-shaped keys, or None when `state` fits `model` exactly."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            parts.append(f"{title}: {', '.join(items[:8])}{more}")
    return "; ".join(parts)


def load_state_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    state = clean_state_dict(state)
    problem = describe_mismatch(model, state)
    if problem:
        raise UserError(f"{source} does not match this model architecture: {problem}")
    model.load_state_dict(state)


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """A diverged run's weights score every query as a hit (NaN compares false): refuse them."""
    bad = non_finite_tensors(state)
    if bad:
        raise UserError(
            f"{source} holds non-finite weights (NaN or inf) in {len(bad)} tensors, e.g. {bad[0]}: "
            "the run diverged; use an earlier checkpoint"
        )


# ---- the content digest ------------------------------------------------------------------------------
def content_digest(state: Mapping[str, Any]) -> str:
    """sha256 over every value of `state` but the digest itself, in a fixed order."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest.update(f"T{data.dtype}{tuple(data.shape)}".encode())
        digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(value, Mapping):
        digest.update(b"{%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[%d" % len(value))
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif value is None or isinstance(value, str | int | float | bool | bytes | torch.dtype | torch.Size):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"a checkpoint holds plain data and tensors only, not {type(value).__name__}")


# ---- writing -------------------------------------------------------------------------------------------
def training_state(
    *,
    model: FashionModel,
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    scaler_state: dict[str, Any],
    progress: Progress,
    rng_per_rank: list[dict[str, Any]],
    schedule: dict[str, Any],
    world_size: int,
    seed: int,
    train_config: dict[str, Any],
    threads: int,
    precision: str,
    pending_gradients: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The dict a training checkpoint holds (its preprocessing lives in the model config only).
    `pending_gradients`: gradients accumulated but not yet stepped (the original system's stepping rule
    carries an epoch's leftover micro-batches into the next epoch's first step), by parameter name."""
    p = progress
    pending = {"pending_gradients": pending_gradients} if pending_gradients else {}
    return {
        "epoch": p.epoch,
        "model_state_dict": clean_state_dict(model.state_dict()),
        "optimizer_state_dict": optimizer_state,
        "scheduler_state_dict": scheduler_state,
        "loss": p.train_losses[-1] if p.train_losses else None,
        "recall_at_10": p.val_recalls[-1] if p.val_recalls else None,
        "recall_at_50": p.val_recalls_at_50[-1] if p.val_recalls_at_50 else None,
        **asdict(p),
        "scaler_state_dict": scaler_state,
        "rng_state": rng_per_rank[0],
        "rng_state_per_rank": rng_per_rank,
        "schedule": schedule,
        "data_order": {
            "seed": seed,
            "epoch": p.epoch,
            "samples_in_epoch": p.samples_in_epoch,
            "world_size": world_size,
        },
        "world_size": world_size,
        "threads": threads,
        "precision": precision,
        "train_config": {k: v for k, v in train_config.items() if k not in PREPROCESS_KEYS},
        "model_config": model.config.to_dict(),
        "tokenizer": model.tokenizer.to_json(),
        **pending,
    }


def write(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save `state` with its content digest."""
    state = {**state, "format_version": FORMAT_VERSION}
    state[DIGEST_KEY] = content_digest(state)
    atomic_write(Path(path), lambda f: torch.save(state, f))


# ---- reading -------------------------------------------------------------------------------------------
def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back: typed access to what it holds, whatever version wrote it."""

    path: Path
    data: Mapping[str, Any]

    @property
    def is_original(self) -> bool:
        """Weights and training state without the architecture (saved without settings): the user names the
        preset. (The original public system's files are converted on reading and carry their own.)"""
        return "model_config" not in self.data

    @property
    def from_original_system(self) -> bool:
        """Written by the original public system and converted on reading."""
        return "original" in self.data

    @property
    def trained_at_constant_lr(self) -> bool:
        """The original system's plain train.py: Adam at a constant LR, no schedule (see original_format)."""
        return bool((self.data.get("original") or {}).get("constant_lr"))

    @property
    def tokenizer_json(self) -> str | None:
        return self.data.get("tokenizer")

    @property
    def epoch(self) -> int:
        return int(self.data["epoch"])

    @property
    def model_state(self) -> dict[str, torch.Tensor]:
        return clean_state_dict(self.data["model_state_dict"])

    @property
    def optimizer_state(self) -> dict[str, Any] | None:
        return self.data.get("optimizer_state_dict") or None

    @property
    def scheduler_state(self) -> dict[str, Any] | None:
        return self.data.get("scheduler_state_dict") or None

    @property
    def pending_gradients(self) -> dict[str, torch.Tensor]:
        """Gradients of micro-batches not stepped yet, by parameter name (empty for most checkpoints)."""
        return dict(self.data.get("pending_gradients") or {})

    @property
    def scaler_state(self) -> dict[str, Any] | None:
        return self.data.get("scaler_state_dict") or None

    @property
    def schedule(self) -> dict[str, Any] | None:
        return self.data.get("schedule")

    @property
    def world_size(self) -> int:
        return int(self.data.get("world_size", 1))

    @property
    def threads(self) -> int | None:
        return self.data.get("threads")

    @property
    def precision(self) -> str | None:
        """What the run computed in: "fp32", "bf16" or "fp16". Files from before it was recorded: "fp32"
        without --mixed-precision, else "bf16/fp16" (autocast ran, in one of the two); None without settings."""
        if "precision" in self.data:
            return self.data["precision"]
        if self.train_config is None:
            return None
        return "bf16/fp16" if self.train_config.get("mixed_precision") else "fp32"

    @property
    def samples_in_epoch(self) -> int:
        return int(self.data.get("samples_in_epoch", 0))

    @property
    def global_step(self) -> int:
        """Optimizer steps taken; the original system's files count them in the scheduler state only."""
        if "global_step" in self.data:
            return int(self.data["global_step"])
        return int((self.scheduler_state or {}).get("last_epoch", 0))

    @property
    def current_lr(self) -> float | None:
        groups = (self.optimizer_state or {}).get("param_groups") or []
        return float(groups[0]["lr"]) if groups else None

    @property
    def preprocess(self) -> dict[str, Any]:
        return dict((self.data.get("model_config") or {}).get("preprocess") or {})

    @property
    def train_config(self) -> dict[str, Any] | None:
        """The run's settings (None for the original system's files), preprocessing included."""
        saved = self.data.get("train_config")
        if saved is None:
            return None
        return {**saved, **{k: v for k, v in self.preprocess.items() if k in PREPROCESS_KEYS}}

    @property
    def model_config(self) -> ModelConfig | None:
        saved = self.data.get("model_config")
        return ModelConfig.from_dict(saved) if saved is not None else None

    @property
    def rng_per_rank(self) -> list[dict[str, Any] | None]:
        return list(self.data.get("rng_state_per_rank") or [self.data.get("rng_state")])

    def progress(self) -> Progress:
        names = Progress.__dataclass_fields__
        progress = Progress(**{k: self.data[k] for k in names if k in self.data})
        progress.global_step = self.global_step
        # The original system keeps R@10 only: R@50 of those epochs is unknown, the best is their max.
        missing = len(progress.val_recalls) - len(progress.val_recalls_at_50)
        progress.val_recalls_at_50 = [math.nan] * max(missing, 0) + list(progress.val_recalls_at_50)
        if "best_recall" not in self.data and progress.val_recalls:
            progress.best_recall = max(progress.val_recalls)
        return progress

    def build_model(self) -> FashionModel:
        """The model this checkpoint holds, rebuilt from its own config and tokenizer (weights checked)."""
        if self.data.get("model_config") is None or "tokenizer" not in self.data:
            raise UserError(f"{self.path} has no model config (saved without settings): pass --preset")
        model = rebuild_model(self.data["model_config"], self.data["tokenizer"])
        state = self.model_state
        check_finite(state, str(self.path))
        load_state_strict(model, state, str(self.path))
        return model


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring fashionrec's older layouts (version 1, or none) to the current one: their settings held the
    preprocessing the model was trained with."""
    if data.get("format_version", 0) <= 1 and "model_config" in data:
        saved = data.get("train_config") or {}
        preprocess = {k: saved[k] for k in PREPROCESS_KEYS if k in saved}
        model_config = {**data["model_config"]}
        model_config["preprocess"] = {**model_config.get("preprocess", {}), **preprocess}
        data = {**data, "model_config": model_config}
    return data


# What the weights-only unpickler says when a file names a class or function it will not call: the file is whole,
# but loading it fully could run code. Any other failure to unpickle is damage (random bytes read as opcodes).
FORBIDDEN_OBJECT = re.compile(
    r"GLOBAL \S+ (was not an allowed global|whose module \S+ is blocked)|Trying to call reduce|Can only (create|build)"
)
UNPICKLER_SAYS = "WeightsUnpickler error:"


def unreadable(path: Path, error: Exception) -> str:
    """Why torch could not read `path`, in one line: objects other than tensors, or a damaged file. torch's
    message advises turning the protection off (weights_only=False): that advice is never repeated."""
    message = str(error)
    if FORBIDDEN_OBJECT.search(message):
        return (
            f"{path} holds objects other than tensors and plain data, so it was not loaded (loading it could run "
            "code); re-save it as a fashionrec checkpoint or use another file"
        )
    if not zipfile.is_zipfile(path):  # torch writes zip archives (and, long ago, bare pickles: those load)
        detail = "not a torch file, or one whose end is missing or damaged"
    elif UNPICKLER_SAYS in message:  # the archive is whole, but its data is not a pickle stream
        detail = f"its data cannot be decoded: {first_sentence(message.split(UNPICKLER_SAYS, 1)[1])}"
    else:
        detail = first_sentence(message) or type(error).__name__
    return f"Checkpoint is truncated or corrupt: {path} ({detail})"


def first_sentence(text: str) -> str:
    """The first sentence of `text`'s first non-empty line, whole (never cut inside a sentence)."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    end = re.search(r"[.!?](\s|$)", line)
    return line[: end.start() + 1] if end else line


def read(path: str | Path, note: Callable[[str], None] = _note, text_model: str | None = None) -> Checkpoint:
    """Load a checkpoint safely (`weights_only`: no code runs), check its version and digest, and convert
    foreign files a model family reads, such as the original public system's (`text_model`: where
    bert-base-uncased's vocabulary is, for those).
    Every problem is one `UserError` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file; none of them is the user's bug
        raise UserError(unreadable(path, e)) from None
    for family in families():
        if family.reads(data):
            presets = " or ".join(f"--preset {p}" for p in family.presets)
            note(f"{path.name} is a checkpoint of {family.foreign}: read as {presets}")
            return Checkpoint(path, family.convert(data, str(path), text_model))
    if not isinstance(data, dict) or "model_state_dict" not in data:
        raise UserError(f"Not a fashionrec checkpoint (no model_state_dict): {path}")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or not 0 <= version <= FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format version {version!r}, which this fashionrec does not know "
            f"(it reads versions up to {FORMAT_VERSION}): upgrade fashionrec to read it"
        )
    if DIGEST_KEY in data:
        if content_digest(data) != data[DIGEST_KEY]:
            raise UserError(f"{path} is damaged: its content does not match the digest saved with it")
    else:
        note(f"{path.name} carries no content digest (an older file); loaded without an integrity check")
    return Checkpoint(path, _migrate(data))


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is not None and b is not None and torch.equal(a, b)


def differences(a: Checkpoint, b: Checkpoint) -> list[str]:
    """Names of weights, optimizer tensors, LR groups and histories that differ (empty: the same training
    state, bit for bit)."""
    sa, sb = a.model_state, b.model_state
    diffs = sorted(set(sa) ^ set(sb)) + [k for k in sa if k in sb and not torch.equal(sa[k], sb[k])]
    oa, ob = (c.optimizer_state or {"state": {}} for c in (a, b))
    for pid, state in oa["state"].items():
        other = ob["state"].get(pid, {})
        diffs += [
            f"optimizer.{pid}.{name}"
            for name, value in state.items()
            if name not in other or not torch.equal(torch.as_tensor(value), torch.as_tensor(other[name]))
        ]
    if oa.get("param_groups") != ob.get("param_groups"):
        diffs.append("optimizer.param_groups")
    pa, pb = a.pending_gradients, b.pending_gradients
    diffs += [f"pending_gradients.{k}" for k in sorted(set(pa) | set(pb)) if not _same_tensor(pa.get(k), pb.get(k))]
    histories = (
        *("epoch", "global_step", "best_recall", "best_protocol"),
        *("train_losses", "val_recalls", "val_recalls_at_50", "val_protocols"),
    )
    diffs += [k for k in histories if a.data.get(k) != b.data.get(k)]
    return diffs
