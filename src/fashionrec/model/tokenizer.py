"""Text tokenizer. Always a `tokenizers.Tokenizer`, stored as its JSON text inside checkpoints, so a run is
self-contained: random-init presets train a WordPiece vocabulary on the training captions, pretrained
text models bring their own vocabulary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from fashionrec.bertvocab import read_vocab
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
        """A WordPiece vocabulary built deterministically (the same captions always give the same ids, which
        a bit-exact rerun needs; the `tokenizers` trainer breaks ties differently from run to run): the special
        tokens, every character seen (alone and as a ##continuation), then whole words by frequency, ties
        in alphabetical order, up to `vocab_size`."""
        normalizer = normalizers.BertNormalizer(lowercase=True)
        splitter = pre_tokenizers.BertPreTokenizer()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
        chars = sorted({c for word in counts for c in word})
        vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
        known = set(vocab)
        words = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
        vocab += words[: max(vocab_size - len(vocab), 0)]
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
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
            return cls.from_vocab(directory / "vocab.txt", max_length)
        raise UserError(f"no tokenizer.json or vocab.txt in text model directory {directory}")

    @classmethod
    def from_vocab(cls, path: str | Path, max_length: int) -> TextTokenizer:
        """A BERT uncased WordPiece tokenizer over a vocab.txt (line i is token i)."""
        vocab: dict[str, int] = {}
        for i, token in enumerate(read_vocab(Path(path))):
            vocab.setdefault(token, i)
        return cls(_bert_pipeline(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))), max_length)
