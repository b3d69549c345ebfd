"""Model families: a family defined in the test package (toy_family.py, one module, nothing else edited)
trains, saves, loads and indexes like the built-in ones; configs keep every field of their family."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from fashionrec.cli.main import build_parser, main
from fashionrec.errors import UserError
from fashionrec.model import ModelConfig, checkpoint_format, load_model, preset_config, register, save_pretrained
from fashionrec.model.families.fashionvlp import FashionVLPConfig
from fashionrec.model.families.original import OriginalFamily
from fashionrec.model.registry import family_of, preset_names, unregister


@pytest.fixture(scope="module")
def toy_family():
    """tests/model/toy_family.py, imported here (importing it registers the family) and unregistered after this
    module's tests, so no other test, nor the command-line reference, sees a `toy` preset."""
    module = importlib.import_module("toy_family")
    register(module.ToyFamily())  # again, in case an earlier use of the module was unregistered
    yield module
    unregister("toy")


def data_args(data: Path, cache: Path, preset: str) -> list[str]:
    return [
        "--path-file", str(data), "--path-folder", str(data / "images"), "--categories", "dress",
        "--preset", preset, "--batch", "8", "--num-workers", "0", "--cache-dir", str(cache), "--seed", "3",
        "--epochs", "1", "--device", "cpu",
    ]  # fmt: skip


def test_a_family_registered_from_outside_trains_saves_loads_and_indexes(
    toy_family, small_data, cache_dir, tmp_path, capsys
):
    assert "toy" in preset_names()  # the CLI takes it: its choices are read when used
    folders = ["--path-file", str(small_data), "--path-folder", str(small_data / "images")]
    assert build_parser().parse_args(["train", *folders, "--preset", "toy"]).preset == "toy"
    run = tmp_path / "run"
    args = [*data_args(small_data, cache_dir, "toy"), "--backbone-lr", "1e-3", "--output-dir", str(run)]
    assert main(["train", *args]) == 0
    (final,) = run.glob("final_*.pt")
    saved = checkpoint_format.read(final).data
    assert [g["name"] for g in saved["optimizer_state_dict"]["param_groups"]] == ["heads", "backbone", "text"]
    model = load_model(final)
    assert isinstance(model, toy_family.ToyModel) and model.config.width == 16 and model.tokenizer.words == 8

    save_pretrained(model, tmp_path / "model")
    index = tmp_path / "index"
    common = ["--cache-dir", str(cache_dir), "--device", "cpu"]
    assert main(["index", "--checkpoint", str(tmp_path / "model"), "--images", str(small_data / "images"),
                 "--out", str(index), *common]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["recommend", "--checkpoint", str(tmp_path / "model"), "--index", str(index), "--item", "D000001",
                 "--text", "is red", "-k", "3", "--device", "cpu", "--json"]) == 0  # fmt: skip
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3


def test_configs_round_trip_every_field_of_their_family(toy_family):
    toy = toy_family.toy()
    toy.width = 7
    again = ModelConfig.from_dict(json.loads(json.dumps(toy.to_dict())))
    assert isinstance(again, toy_family.ToyConfig) and again == toy
    paper = preset_config("paper")
    assert ModelConfig.from_dict(paper.to_dict()) == paper and isinstance(paper, FashionVLPConfig)
    clip = preset_config("clip4cir")
    assert ModelConfig.from_dict(clip.to_dict()) == clip and clip.preprocess["resize"] == "targetpad"
    with pytest.raises(UserError, match="settings this fashionrec does not know: colour"):
        ModelConfig.from_dict({**toy.to_dict(), "colour": "red"})
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        ModelConfig.from_dict({"preset": "nope"})


def test_a_preset_belongs_to_one_family():
    class Thief(OriginalFamily):
        name = "thief"
        presets = {"tiny": preset_config}

    with pytest.raises(ValueError, match="preset 'tiny' of family 'thief' already belongs to family 'fashionvlp'"):
        register(Thief())
    assert family_of("tiny").name == "fashionvlp"
