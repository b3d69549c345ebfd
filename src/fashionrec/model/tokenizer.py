"""Text tokenizer. Always a `tokenizers.Tokenizer`, stored as its JSON text inside checkpoints, so a run is
self-contained: random-init presets train a WordPiece vocabulary on the training captions, pretrained
text models bring their own vocabulary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from fashionrec.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_pipeline(tok: Tokenizer) -> Tokenizer:
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok


class TextTokenizer:
    """Fixed-length encoding: ids and attention mask padded or truncated to `max_length`."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        pad_id = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding(length=max_length, pad_id=self.pad_id, pad_token="[PAD]")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        enc = self.tokenizer.encode(text)
        return enc.ids, enc.attention_mask

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encs = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long)
        return ids, mask

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str, max_length: int) -> TextTokenizer:
        return cls(Tokenizer.from_str(text), max_length)

    @classmethod
    def train_wordpiece(cls, texts: Iterable[str], vocab_size: int, max_length: int) -> TextTokenizer:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(_bert_pipeline(tok), max_length)

    @classmethod
    def from_directory(cls, directory: str | Path, max_length: int) -> TextTokenizer:
        """A Hugging Face model directory: its tokenizer.json, or a BERT vocab.txt."""
        directory = Path(directory)
        if (directory / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            return cls(tok, max_length)
        if (directory / "vocab.txt").is_file():
            vocab = {}
            for i, line in enumerate((directory / "vocab.txt").read_text(encoding="utf-8").splitlines()):
                vocab.setdefault(line.rstrip("\n"), i)
            return cls(_bert_pipeline(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))), max_length)
        raise UserError(f"no tokenizer.json or vocab.txt in text model directory {directory}")
