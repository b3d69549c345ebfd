"""The text tokenizer of a CLIP-family model: the model's own (open_clip's BPE `SimpleTokenizer`, open_clip's
wrapper of a Hugging Face tokenizer, or a transformers tokenizer), so text is cut into the ids the model was
trained on: CLIP 77 tokens with its start/end tokens, SigLIP 64 with max-length padding and its
SentencePiece vocabulary.

It travels with the model as JSON (`to_json`): the settings, and the tokenizer's files (base64), except
open_clip's BPE vocabulary, which ships with open_clip and is identified by its sha256."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fashionrec.errors import UserError

OPEN_CLIP = "open_clip"
TRANSFORMERS = "transformers"


def _files_of(folder: Path) -> dict[str, str]:
    return {p.name: base64.b64encode(p.read_bytes()).decode() for p in sorted(folder.iterdir()) if p.is_file()}


def _bpe_file() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


class ClipTokenizer:
    """Fixed-length encoding: `encode(text) -> (input_ids, attention_mask)` of `context_length` tokens."""

    def __init__(self, spec: Mapping[str, Any]):
        self.spec = dict(spec)
        self.max_length = int(spec["context_length"])
        with tempfile.TemporaryDirectory() as folder:
            for name, data in spec.get("files", {}).items():
                (Path(folder) / name).write_bytes(base64.b64decode(data))
            self._tokenizer = self._load(Path(folder))

    def _load(self, folder: Path) -> Any:
        kwargs = dict(self.spec.get("kwargs", {}))
        if self.spec["library"] == TRANSFORMERS:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(folder)
        if self.spec["kind"] == "hf":
            from open_clip.tokenizer import HFTokenizer

            return HFTokenizer(str(folder), context_length=self.max_length, **kwargs)
        from open_clip.tokenizer import SimpleTokenizer

        bpe = _bpe_file()
        if hashlib.sha256(bpe.read_bytes()).hexdigest() != self.spec["bpe_sha256"]:
            raise UserError(f"open_clip's BPE vocabulary {bpe} is not the one this model was saved with")
        return SimpleTokenizer(str(bpe), context_length=self.max_length, **kwargs)

    # ---- made from a model's files ------------------------------------------------------------------
    @classmethod
    def open_clip_simple(cls, context_length: int, kwargs: Mapping[str, Any]) -> ClipTokenizer:
        """open_clip's BPE tokenizer (OpenAI CLIP's vocabulary, in the open_clip package)."""
        digest = hashlib.sha256(_bpe_file().read_bytes()).hexdigest()
        spec = {"library": OPEN_CLIP, "kind": "simple", "context_length": context_length, "bpe_sha256": digest}
        return cls({**spec, "kwargs": dict(kwargs)})

    @classmethod
    def open_clip_hf(cls, folder: Path, context_length: int, kwargs: Mapping[str, Any]) -> ClipTokenizer:
        """open_clip's wrapper of the Hugging Face tokenizer whose files are in `folder`."""
        spec = {"library": OPEN_CLIP, "kind": "hf", "context_length": context_length, "kwargs": dict(kwargs)}
        return cls({**spec, "files": _files_of(folder)})

    @classmethod
    def transformers(cls, folder: Path, context_length: int) -> ClipTokenizer:
        """The transformers tokenizer of a model folder (only its tokenizer files are kept)."""
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as out:
            AutoTokenizer.from_pretrained(folder).save_pretrained(out)
            files = _files_of(Path(out))
        return cls({"library": TRANSFORMERS, "context_length": context_length, "files": files})

    # ---- the tokenizer interface --------------------------------------------------------------------
    def encode(self, text: str) -> tuple[list[int], list[int]]:
        ids, mask = self.encode_batch([text])
        return ids[0].tolist(), mask[0].tolist()

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids and attention mask [B, context_length]. The CLIP encoders read ids only (CLIP's causal text
        transformer pools at its end token, SigLIP was trained without a mask); the mask is for the common
        interface."""
        if self.spec["library"] == TRANSFORMERS:
            out = self._tokenizer(
                list(texts), padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            )
            ids = out["input_ids"].long()
            return ids, out.get("attention_mask", torch.ones_like(ids)).long()
        ids = self._tokenizer(list(texts)).long()
        return ids, (ids != 0).long() if self.spec["kind"] == "simple" else torch.ones_like(ids)

    @property
    def vocab_size(self) -> int:
        inner = getattr(self._tokenizer, "tokenizer", self._tokenizer)
        return len(inner.get_vocab()) if hasattr(inner, "get_vocab") else len(inner.encoder)

    def to_json(self) -> str:
        return json.dumps(self.spec, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClipTokenizer:
        return cls(json.loads(text))
