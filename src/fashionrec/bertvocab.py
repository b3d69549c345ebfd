"""Where the bert-base-uncased WordPiece vocabulary comes from. The original system stored captions as that
vocabulary's ids and trained its text encoder on them, so both the data layer (decoding `feedback_tokens`)
and the `original` model preset (its tokenizer) need the same file. Lives beside `errors` so that both can
import it without importing each other."""

from __future__ import annotations

from pathlib import Path

from fashionrec.errors import UserError
from fashionrec.hfcache import hf_cache_dir, offline

BERT_UNCASED = "bert-base-uncased"
VOCAB_FILE = "vocab.txt"


def find_vocab(text_model: str | None = None) -> Path:
    """`vocab.txt` of `text_model`: a folder (used as given, never downloaded into), or a Hugging Face model
    name (default bert-base-uncased) looked up in the local cache first, then downloaded unless offline
    (`fashionrec.hfcache`)."""
    name = text_model or BERT_UNCASED
    folder = Path(name)
    if folder.is_dir():
        if (folder / VOCAB_FILE).is_file():
            return folder / VOCAB_FILE
        raise UserError(f"no {VOCAB_FILE} in text model folder {folder}: the {BERT_UNCASED} vocabulary is needed")
    from huggingface_hub import hf_hub_download

    cache = hf_cache_dir()
    try:
        return Path(hf_hub_download(name, VOCAB_FILE, cache_dir=cache, local_files_only=True))
    except Exception:  # not in the cache (or not a model id at all): download below, unless offline
        pass
    how = f"fetch https://huggingface.co/{name}/resolve/main/{VOCAB_FILE} into a folder and pass --text-model FOLDER"
    if offline():
        raise UserError(
            f"the {name} vocabulary ({VOCAB_FILE}) is not in the Hugging Face cache {cache} and downloads are off "
            f"(HF_HUB_OFFLINE); {how}"
        )
    try:
        return Path(hf_hub_download(name, VOCAB_FILE, cache_dir=cache))
    except Exception as e:  # no connection, unknown name, no such file: all mean "not available here"
        raise UserError(
            f"the {name} vocabulary ({VOCAB_FILE}) is not in the Hugging Face cache {cache} and could not be "
            f"downloaded; {how}"
        ) from e


def read_vocab(path: Path) -> list[str]:
    """Tokens by id: line i of vocab.txt is token i."""
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read vocabulary {path}: {e}") from None
    if not tokens:
        raise UserError(f"vocabulary {path} is empty")
    return tokens
