"""CLIP-family models by name, offline: a tiny open_clip model registered here, and a tiny transformers CLIP
and SigLIP saved with `save_pretrained`. For each: `init` writes a model directory that `index`,
`recommend` and the HTTP app take with no training; its zero-shot embeddings are the sums the library
computes itself (its own preprocessing, tokenizer and model) on the same picture and text; weights come
from a populated Hugging Face cache with downloads off, and an empty one is one clear line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clip_models import OPEN_CLIP_SIZE, hf_clip, hf_siglip, register_open_clip
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from fashionrec.cli.main import main
from fashionrec.data.demo import make_demo_data
from fashionrec.index import Recommender
from fashionrec.index.model_encoder import ModelEncoder
from fashionrec.model import load_model
from fashionrec.serve.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # its helper that starts `fashionrec serve`
from serve_helpers import serve_process  # noqa: E402

LIBRARIES = ("open_clip", "clip", "siglip")
TEXT = "is red with long sleeves"
HUB_COMMIT = "c11bface" * 5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """--model of each tiny model: the registered open_clip name, the transformers folders."""
    root = tmp_path_factory.mktemp("clip_models")
    return {
        "open_clip": register_open_clip(root),
        "clip": str(hf_clip(root / "hf_clip")),
        "siglip": str(hf_siglip(root / "hf_siglip")),
    }


@pytest.fixture(scope="module")
def inits(models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`fashionrec init --preset clip --model ...` of each (the open_clip one has random weights: no tag)."""
    root = tmp_path_factory.mktemp("inits")
    made = {}
    for library, name in models.items():
        extra = ["--no-pretrained"] if library == "open_clip" else []
        assert main(["init", "--preset", "clip", "--model", name, str(root / library), *extra]) == 0
        made[library] = root / library
    return made


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 demo garments of 80 x 60 pixels: not square, so the resize rules matter."""
    data = make_demo_data(tmp_path_factory.mktemp("catalog"), images=24, image_size=64)
    for path in data.glob("images/*.png"):
        Image.open(path).resize((80, 60)).save(path)
    return data / "images"


@pytest.mark.parametrize("library", LIBRARIES)
def test_init_gives_a_model_that_indexes_recommends_and_serves(library, inits, catalog, tmp_path, capsys):
    model_dir, index = inits[library], tmp_path / "index"
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    common = ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["index", "--checkpoint", str(model_dir), "--images", str(catalog), "--out", str(index), *common]) == 0
    query = sorted(catalog.glob("*.png"))[3]
    capsys.readouterr()
    args = ["--checkpoint", str(model_dir), "--index", str(index), "--image", str(query), "--text", TEXT, "-k", "5"]
    assert main(["recommend", *args, "--device", "cpu", "--json"]) == 0
    cli = [r["id"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert len(cli) == 5
    recommender = Recommender.open(model_dir, index, device="cpu")
    try:
        with TestClient(create_app(recommender)) as client:
            answer = client.post(
                "/recommend", files={"image": ("q.png", query.read_bytes(), "image/png")}, data={"text": TEXT, "k": "5"}
            )
    finally:
        recommender.close()
    assert answer.status_code == 200, answer.text
    assert [r["id"] for r in answer.json()["results"]] == cli


def library_embeddings(library: str, name: str, model_dir: Path, picture: Image.Image, text: str):
    """(reference, target, token ids) as the library computes them: its preprocessing, its tokenizer, its
    model (with the weights fashionrec's model directory holds)."""
    ours = load_model(model_dir)
    if library == "open_clip":
        import open_clip

        lib = open_clip.create_model(name, pretrained=None).eval()
        lib.load_state_dict({k.removeprefix("encoder.model."): v for k, v in ours.state_dict().items()})
        pixels = open_clip.image_transform(OPEN_CLIP_SIZE, is_train=False, resize_mode="shortest")(picture)[None]
        ids = open_clip.get_tokenizer(name)([text])
        image, words = lib.encode_image(pixels), lib.encode_text(ids)
    else:
        from transformers import AutoModel, AutoTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        lib = AutoModel.from_pretrained(name).eval()  # the folder fashionrec's model was made from
        processor = (CLIPImageProcessorPil if library == "clip" else SiglipImageProcessorPil).from_pretrained(name)
        pixels = processor(picture, return_tensors="pt")["pixel_values"]
        length = 77 if library == "clip" else 64
        ids = AutoTokenizer.from_pretrained(name)([text], padding="max_length", max_length=length)["input_ids"]
        ids = torch.tensor(ids)
        image = lib.get_image_features(pixel_values=pixels).pooler_output
        words = lib.get_text_features(input_ids=ids).pooler_output
    return F.normalize(image + words, dim=-1), F.normalize(image, dim=-1), ids


@pytest.mark.parametrize("library", LIBRARIES)
def test_zero_shot_embeddings_are_the_librarys_own_sum(library, models, inits, catalog, tmp_path):
    """Through the serving path (the catalog encoder and a query as the server prepares it)."""
    path = sorted(catalog.glob("*.png"))[0]
    encoder = ModelEncoder.load(inits[library], tmp_path / "cache", device="cpu")
    target = encoder.encode_catalog({"x": path}, batch_size=1)[0]
    prepared = encoder.prepare_query(Image.open(path), TEXT)
    reference = encoder.encode_queries([prepared])[0]
    with torch.no_grad():
        want_reference, want_target, ids = library_embeddings(
            library, models[library], inits[library], Image.open(path), TEXT
        )
    assert prepared[1] == ids[0].tolist() and len(prepared[1]) == {"open_clip": 77, "clip": 77, "siglip": 64}[library]
    np.testing.assert_allclose(target, want_target[0].numpy(), atol=2e-6)
    np.testing.assert_allclose(reference, want_reference[0].numpy(), atol=2e-6)


def hub_snapshot(hf_home: Path, repo: str, folder: Path) -> None:
    """`folder`'s files in the Hugging Face hub cache layout, as huggingface_hub writes it."""
    cached = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, cached / "snapshots" / HUB_COMMIT)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(HUB_COMMIT)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache with downloads off; any request to the Hub would go to a closed port."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    return tmp_path / "hf"


@pytest.mark.parametrize(
    ("name", "fetch"),
    [
        ("ViT-B-32/laion2b_s34b_b79k", "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        (
            "openai/clip-vit-base-patch32",
            "hf download openai/clip-vit-base-patch32 config.json preprocessor_config.json",
        ),
        ("google/siglip-base-patch16-224", "hf download google/siglip-base-patch16-224"),
    ],
)
def test_offline_with_an_empty_cache_is_one_clear_line(name, fetch, offline_hub, tmp_path, capsys):
    assert main(["init", "--preset", "clip", "--model", name, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "HF_HUB_OFFLINE" in err and fetch in err and "--no-pretrained" in err
    assert not (tmp_path / "out").exists()


def test_weights_by_name_come_from_a_populated_cache_with_downloads_off(models, offline_hub, tmp_path, monkeypatch):
    """open_clip: a pretrained tag whose weights are on the Hub (registered here, as open_clip's own are);
    transformers: a model id."""
    import open_clip
    from open_clip.pretrained import _PRETRAINED, _pcfg

    torch.manual_seed(5)
    weights = open_clip.create_model(models["open_clip"], pretrained=None).state_dict()
    (tmp_path / "oc").mkdir()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "oc" / "open_clip_model.safetensors"))
    hub_snapshot(offline_hub, "fashionrec-test/tiny-open-clip", tmp_path / "oc")
    monkeypatch.setitem(_PRETRAINED, models["open_clip"], {"tiny": _pcfg(hf_hub="fashionrec-test/tiny-open-clip/")})
    hub_snapshot(offline_hub, "fashionrec-test/tiny-clip", Path(models["clip"]))

    assert main(["init", "--model", f"{models['open_clip']}/tiny", str(tmp_path / "a")]) == 0
    loaded = load_model(tmp_path / "a").encoder.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert main(["init", "--model", "fashionrec-test/tiny-clip", str(tmp_path / "b")]) == 0
    expected = load_model(tmp_path / "b").encoder.model.state_dict()
    from transformers import AutoModel

    saved = AutoModel.from_pretrained(models["clip"]).state_dict()
    assert all(torch.equal(expected[k], saved[k]) for k in saved)


def test_the_older_preprocessor_config_form_is_read(models, tmp_path):
    """Sizes as plain numbers, as OpenAI's CLIP repositories on the Hub still have them."""
    folder = shutil.copytree(models["clip"], tmp_path / "old")
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config.update(size=32, crop_size=32, feature_extractor_type="CLIPFeatureExtractor")
    config.pop("image_processor_type", None)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    assert main(["init", "--model", str(folder), str(tmp_path / "model")]) == 0
    model = load_model(tmp_path / "model")
    assert model.config.image_size == 32 and model.config.preprocess["resize"] == "shortest"


def test_a_hugging_face_folder_as_checkpoint_points_at_init(models, catalog, tmp_path, capsys):
    code = main(["index", "--checkpoint", models["siglip"], "--images", str(catalog), "--out", str(tmp_path / "i")])
    assert code == 2
    err = capsys.readouterr().err
    assert "is a Hugging Face model folder (siglip), not a fashionrec model: make one with " in err
    assert f"`fashionrec init --preset clip --model {models['siglip']} OUT`" in err and err.count("\n") == 1


def test_init_never_overwrites(inits, capsys):
    assert main(["init", "--no-pretrained", "--model", "x", str(inits["clip"])]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow  # a real `fashionrec serve` process
def test_fashionrec_serve_answers_with_a_clip_model_made_by_init(inits, catalog, tmp_path):
    """The model directory carries the whole CLIP (architecture, tokenizer): the server process knows
    nothing of the test's registrations or folders."""
    index = tmp_path / "index"
    assert main(["index", "--checkpoint", str(inits["open_clip"]), "--images", str(catalog), "--out", str(index),
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]) == 0  # fmt: skip
    query = sorted(catalog.glob("*.png"))[5]
    with serve_process(inits["open_clip"], index, tmp_path / "server.log") as (url, _):
        files = {"image": ("q.png", query.read_bytes())}
        answer = httpx.post(f"{url}/recommend", files=files, data={"text": TEXT, "k": "3"}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == 3
