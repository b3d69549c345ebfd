"""Tiny, randomly initialised CLIP-family models built offline, one per way fashionrec reads them: an open_clip
model from a small config registered at test time (its BPE vocabulary ships with open_clip), and a
transformers CLIP and SigLIP saved with `save_pretrained` (a byte-level BPE vocabulary with no merges; a
SentencePiece vocabulary trained here on a few sentences)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

SIZE = 32  # input pixels of the transformers models
OPEN_CLIP_SIZE = 64  # and of the open_clip one, which the Combiner tests train on (garment details need pixels)
OPEN_CLIP_NAME = "fashionrec-test-tiny-clip"
SENTENCES = [
    "is red with long sleeves",
    "is a blue striped shirt and shorter",
    "has a floral print and is darker",
    "is black and has no sleeves",
    "is a green maxi dress with buttons",
    "is white, plain and longer",
]


def register_open_clip(folder: Path) -> str:
    """A two-layer ViT / two-layer text transformer open_clip config, registered under OPEN_CLIP_NAME (in this
    process: fashionrec models made of it carry the config, so other processes need no registration)."""
    import open_clip

    config = {
        "embed_dim": 64,
        # Average pooling: a random tower's class token says little about the picture, the patches' mean does.
        "vision_cfg": {
            "image_size": OPEN_CLIP_SIZE,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
            "pool_type": "avg",
        },
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    path = folder / f"{OPEN_CLIP_NAME}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(str(path))
    return OPEN_CLIP_NAME


def hf_clip(folder: Path, seed: int = 0) -> Path:
    """A transformers CLIP folder: model, byte-level BPE tokenizer (every byte a token, no merges), and
    CLIP's image processor (shortest edge + centre crop)."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    alphabet = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate([*alphabet, *(c + "</w>" for c in alphabet)])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIZE, patch_size=8
    )
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder


def hf_siglip(folder: Path, seed: int = 0) -> Path:
    """A transformers SigLIP folder: model, a SentencePiece tokenizer trained on SENTENCES, and SigLIP's image
    processor (resize to a square, mean and std 0.5)."""
    import sentencepiece
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=proto,
        vocab_size=60,
        hard_vocab_limit=False,
        model_type="unigram",
        minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(proto.getvalue())
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    text = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIZE, patch_size=8
    )
    torch.manual_seed(seed)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder
