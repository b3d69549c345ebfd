"""The checkpoint file format: digest, version check, migration, safety, and one comparison of training states."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashionrec.cli.main import main
from fashionrec.errors import UserError
from fashionrec.model import checkpoint_format, create_model, load_model
from fashionrec.model.checkpoint_format import (
    DIGEST_KEY,
    FORMAT_VERSION,
    Progress,
    differences,
    first_sentence,
    read,
    write,
)
from fashionrec.train.checkpoint import CheckpointManager, load_checkpoint

TEXTS = ["is red and has long sleeves", "is shorter and darker"] * 4
MARK = 0.123456789


@pytest.fixture(scope="module")
def state() -> dict:
    """A real training state of the tiny model, one weight filled with a value easy to find in the file."""
    torch.manual_seed(0)
    model = create_model("tiny", TEXTS, pretrained=False)
    model.config.preprocess = {"crop": "none", "landmarks": "none", "yolo_weights": None}
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("weight") and p.numel() > 4096).fill_(MARK)
    optimizer = torch.optim.AdamW(model.parameters())
    return checkpoint_format.training_state(
        model=model,
        optimizer_state=optimizer.state_dict(),
        scheduler_state={},
        scaler_state={},
        progress=Progress(epoch=1, train_losses=[1.0], val_recalls=[0.5], val_recalls_at_50=[0.9], best_recall=0.5),
        rng_per_rank=[{"torch": torch.get_rng_state(), "cuda": []}],
        schedule={"kind": "onecycle", "max_lr": 3e-4, "total_steps": 10, "pct_start": 0.2, "start_step": 0},
        world_size=1,
        seed=0,
        train_config={"preset": "tiny", "crop": "none", "landmarks": "none", "yolo_weights": None, "epochs": 2},
        threads=1,
        precision="bf16",
    )


def damage_a_weight(path: Path) -> None:
    """Overwrite 1 KB inside a weight's bytes: torch's reader notices nothing there."""
    data = bytearray(path.read_bytes())
    pattern = torch.full((64,), MARK).numpy().tobytes()
    at = data.find(pattern)
    assert at > 0
    data[at : at + 1024] = torch.randn(256).numpy().tobytes()
    path.write_bytes(bytes(data))


def test_written_checkpoints_carry_a_digest_and_read_back_verified(state, tmp_path):
    write(tmp_path / "c.pt", state)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and len(raw[DIGEST_KEY]) == 64
    ckpt = read(tmp_path / "c.pt")
    assert ckpt.epoch == 1 and ckpt.threads == 1 and differences(ckpt, read(tmp_path / "c.pt")) == []
    assert ckpt.precision == "bf16"


def test_preprocessing_is_stored_once_and_travels_with_the_model(state, tmp_path):
    write(tmp_path / "c.pt", state)
    ckpt = read(tmp_path / "c.pt")
    assert "crop" not in ckpt.data["train_config"]
    assert ckpt.preprocess["crop"] == "none" and ckpt.train_config["crop"] == "none"
    assert load_model(tmp_path / "c.pt").config.preprocess["crop"] == "none"


def test_damage_inside_a_tensor_is_one_clear_error(state, tmp_path, capsys):
    path = tmp_path / "c.pt"
    write(path, state)
    damage_a_weight(path)
    with pytest.raises(UserError, match="is damaged: its content does not match the digest saved with it"):
        read(path)
    code = main(["evaluate", "--checkpoint", str(path), "--path-file", str(tmp_path), "--path-folder", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is damaged" in err


def test_a_folder_skips_a_damaged_newest_file_for_the_previous_valid_one(state, tmp_path):
    manager = CheckpointManager(tmp_path, "optimized_model")
    older = manager.save_epoch(state, 1, 0.5)
    newest = manager.save_epoch({**state, "epoch": 2}, 2, 0.6)
    damage_a_weight(newest)
    messages = []
    assert load_checkpoint(tmp_path, log=messages.append).path == older
    assert newest.name in messages[0] and "is damaged" in messages[0]


def test_random_bytes_at_the_start_are_damage_not_a_danger(state, tmp_path):
    """The file's head overwritten (a bad disk, a stray write): damaged, not "could run code"."""
    path = tmp_path / "c.pt"
    write(path, state)
    data = bytearray(path.read_bytes())
    data[:64] = bytes(range(64, 128))
    path.write_bytes(data)
    with pytest.raises(UserError) as e:
        read(path)
    assert str(e.value).startswith(f"Checkpoint is truncated or corrupt: {path} (its data cannot be decoded: ")
    assert "could run code" not in str(e.value) and "weights_only" not in str(e.value)


def test_a_truncated_newest_file_is_skipped_with_a_whole_sentence(state, tmp_path):
    manager = CheckpointManager(tmp_path, "optimized_model")
    older = manager.save_epoch(state, 1, 0.5)
    newest = manager.save_epoch({**state, "epoch": 2}, 2, 0.6)
    newest.write_bytes(newest.read_bytes()[:100_000])
    messages = []
    assert load_checkpoint(tmp_path, log=messages.append).path == older
    assert messages == [
        f"warning: skipping unreadable checkpoint (Checkpoint is truncated or corrupt: {newest} (not a torch file, "
        "or one whose end is missing or damaged)); falling back to the previous one"
    ]


def test_torch_messages_are_quoted_by_whole_sentences():
    torch_says = (
        "PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal "
        "miniz error. If you are seeing this error, there is a high likelihood that your checkpoint is corrupted."
    )
    assert (
        first_sentence(torch_says)
        == "PytorchStreamReader failed reading zip archive: failed finding central directory."
    )
    assert first_sentence("\n\nUnsupported operand 39\n\nCheck the documentation") == "Unsupported operand 39"


def test_an_unknown_format_version_is_refused_in_one_line(state, tmp_path, capsys):
    for version in (FORMAT_VERSION + 1, "2.0"):
        torch.save({**state, "format_version": version}, tmp_path / "new.pt")
        code = main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "new.pt"),
                "--path-file",
                str(tmp_path),
                "--path-folder",
                str(tmp_path),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert f"checkpoint format version {version!r}, which this fashionrec does not know" in err


def test_files_without_a_digest_load_with_a_note_and_version_1_is_migrated(state, tmp_path):
    old = {k: v for k, v in state.items() if k not in (DIGEST_KEY, "threads", "precision")}
    old["format_version"] = 1
    old["train_config"] = {**old["train_config"], "crop": "yolo", "yolo_weights": "y.pt", "landmarks": "none"}
    torch.save(old, tmp_path / "v1.pt")
    notes = []
    ckpt = read(tmp_path / "v1.pt", note=notes.append)
    assert notes == ["v1.pt carries no content digest (an older file); loaded without an integrity check"]
    assert ckpt.preprocess == {"crop": "yolo", "landmarks": "none", "yolo_weights": "y.pt"}
    assert ckpt.threads is None
    assert ckpt.precision == "fp32"  # no --mixed-precision in its settings
    torch.save({**old, "train_config": {**old["train_config"], "mixed_precision": True}}, tmp_path / "amp.pt")
    assert read(tmp_path / "amp.pt", note=notes.append).precision == "bf16/fp16"  # autocast ran, in one of them


def test_a_model_with_non_finite_weights_is_refused(state, tmp_path):
    bad = {**state, "model_state_dict": dict(state["model_state_dict"])}
    name = next(iter(bad["model_state_dict"]))
    bad["model_state_dict"][name] = torch.full_like(bad["model_state_dict"][name], float("nan"))
    write(tmp_path / "nan.pt", bad)
    with pytest.raises(UserError, match=f"non-finite weights .* e.g. {name}: the run diverged"):
        load_model(tmp_path / "nan.pt")


def test_differences_name_what_changed(state, tmp_path):
    write(tmp_path / "a.pt", state)
    changed = {**state, "model_state_dict": dict(state["model_state_dict"]), "val_recalls": [0.6]}
    name = next(iter(changed["model_state_dict"]))
    changed["model_state_dict"][name] = changed["model_state_dict"][name] + 1
    write(tmp_path / "b.pt", changed)
    assert differences(read(tmp_path / "a.pt"), read(tmp_path / "b.pt")) == [name, "val_recalls"]
