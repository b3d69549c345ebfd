"""The `original` preset and original-format checkpoints, against a written spec of the original system's model
(tests/model/original_reference.py): names and shapes at full size, and at reduced BERT width (the ResNet-50
is always full, its names fix its width; images are 64 px) the forward, a converted checkpoint's outputs,
and the next AdamW + OneCycleLR step after two real ones."""

from __future__ import annotations

import pytest
import torch
from original_reference import Compiled, FashionVLP
from original_run import (
    MINILM,
    SMALL_BERT,
    B,
    adamw,
    inputs,
    onecycle,
    pixels,
    reference_forward,
    reference_step,
    through_disk,
    train_original,
)
from transformers import BertConfig

from fashionrec.errors import UserError
from fashionrec.model import ModelConfig, TextTokenizer, build_model, create_model, preset_config
from fashionrec.model.original import OriginalFashionVLP
from fashionrec.model.original_format import convert_original, export_original, is_original_checkpoint

pytestmark = pytest.mark.slow  # trains for seconds: the whole suite runs it, the quick tier does not

TOTAL_STEPS = 20  # the original's OneCycleLR, over a short plan
SECOND_COPY = "reference_block.feature_extractor."


@pytest.fixture(scope="module")
def trained():
    """A small original model after two real AdamW/OneCycleLR steps, saved as the original's train.py does
    (under torch.compile), and the live objects to take the third step with."""
    return train_original(steps=2, total_steps=TOTAL_STEPS, recall=0.25)


@pytest.fixture(scope="module")
def converted(trained):
    return convert_original(trained[3], "run.pt", text_model=str(MINILM))


def load(converted_ckpt) -> OriginalFashionVLP:
    config = ModelConfig.from_dict(converted_ckpt["model_config"])
    model = build_model(config, TextTokenizer.from_json(converted_ckpt["tokenizer"], config.max_text_len))
    model.load_state_dict(converted_ckpt["model_state_dict"], strict=True)
    return model


def test_full_size_names_shapes_and_order_match_the_original():
    """bert-base width: 851 keys with the backbone twice, ~150.9M parameters, the same parameters() order."""
    with torch.device("meta"):
        original = FashionVLP(BertConfig.from_dict({**preset_config("original").text}))
        ours = OriginalFashionVLP(preset_config("original"), TextTokenizer.from_vocab(MINILM / "vocab.txt", 100))
    theirs = original.state_dict()
    assert len(theirs) == 851 and sum(1 for k in theirs if k.startswith(SECOND_COPY)) == 318
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.items() if not k.startswith(SECOND_COPY)
    }
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in original.named_parameters()]
    assert round(sum(p.numel() for p in ours.parameters()) / 1e6, 1) == 150.8
    assert ours.reference_block.vlp_transformer.config.num_attention_heads == 12


@pytest.mark.parametrize("wrap", ["_orig_mod.", "", "module."])
def test_every_key_maps_and_the_backbone_is_tied(trained, wrap):
    ckpt = {
        **trained[3],
        "model_state_dict": {wrap + k.split(".", 1)[1]: v for k, v in trained[3]["model_state_dict"].items()},
    }
    assert is_original_checkpoint(ckpt)
    out = convert_original(ckpt, "run.pt", text_model=str(MINILM))
    original = trained[0].state_dict()
    assert set(out["model_state_dict"]) == {k for k in original if not k.startswith(SECOND_COPY)}
    assert all(torch.equal(v, original[k]) for k, v in out["model_state_dict"].items())
    assert out["model_config"]["preset"] == "original" and out["model_config"]["text"] == SMALL_BERT


def test_their_checkpoints_and_the_preset_use_their_landmark_detector(converted):
    assert converted["model_config"]["preprocess"]["landmarks"] == "original"
    assert preset_config("original").preprocess["landmarks"] == "original"


def test_index_buffers_older_transformers_saved_are_dropped(trained):
    position_ids = {"_orig_mod.reference_block.vlp_transformer.embeddings.position_ids": torch.arange(512)[None]}
    out = convert_original(edited(trained[3], put=position_ids), "run.pt", text_model=str(MINILM))
    assert not any("position_ids" in k for k in out["model_state_dict"])


def test_converted_model_computes_the_original_function(trained, converted):
    reference, ours = trained[0].eval(), load(converted).eval()
    batch = inputs(10)
    with torch.no_grad():
        expected = [torch.nn.functional.normalize(f, dim=-1) for f in reference_forward(reference, batch)]
        torch.testing.assert_close(list(ours(batch)), expected, atol=2e-5, rtol=1e-4)
        # The gallery path: the target block on its own landmarks, as the original's feature extractor ran it.
        own = reference.target_block(pixels(batch["tgt_image"]), pixels(batch["tgt_crop"]), batch["tgt_landmarks"])
        got = ours.encode_target(
            batch["tgt_image"], batch["tgt_crop"], batch["tgt_landmarks"], batch["tgt_landmark_mask"]
        )
        torch.testing.assert_close(got, torch.nn.functional.normalize(own, dim=-1), atol=2e-5, rtol=1e-4)


def test_quirks_padding_attended_and_absent_points_sampled_at_the_corner(converted):
    model = load(converted).eval()
    batch = inputs(11)
    with torch.no_grad():
        base = model(batch)
        longer = {**batch, "input_ids": torch.cat([batch["input_ids"], torch.zeros(B, 4, dtype=torch.long)], 1)}
        longer["attention_mask"] = (longer["input_ids"] != 0).long()
        assert not torch.allclose(model(longer)[0], base[0])  # more [PAD] changes f_ref: padding is attended
        moved = {**batch, "ref_landmarks": batch["ref_landmarks"] + 0.3 * ~batch["ref_landmark_mask"].unsqueeze(-1)}
        torch.testing.assert_close(model(moved), base)  # absent points count as (0, 0) wherever they are given
        none = {**batch, "ref_landmark_mask": torch.zeros_like(batch["ref_landmark_mask"])}
        assert not torch.allclose(model(none)[1], base[1])  # ... and are still attended by the target block


def test_next_step_continues_adamw_and_the_schedule(trained, converted):
    reference, optimizer, scheduler, _ = trained
    ours = load(converted)
    our_opt = adamw(ours.parameters())
    our_sched = onecycle(our_opt, TOTAL_STEPS)
    our_opt.load_state_dict(converted["optimizer_state_dict"])
    our_sched.load_state_dict(converted["scheduler_state_dict"])
    assert converted["global_step"] == 2 and our_sched.get_last_lr() == scheduler.get_last_lr()

    batch = inputs(2)
    reference_loss = reference_step(reference, optimizer, scheduler, batch, seed=2)
    ours.train()
    torch.manual_seed(2)
    loss = ours.loss(*ours(batch))
    loss.backward()
    our_opt.step()
    our_opt.zero_grad()
    our_sched.step()

    assert loss.item() == pytest.approx(reference_loss, rel=1e-5)
    theirs = reference.state_dict()
    for name, value in ours.state_dict().items():  # weights and BatchNorm running statistics
        torch.testing.assert_close(value, theirs[name], atol=1e-5, rtol=1e-4, msg=name)
    assert our_sched.get_last_lr() == scheduler.get_last_lr() and our_sched.last_epoch == 3
    first = next(ours.parameters())
    assert float(our_opt.state[first]["step"]) == 3
    pooler = ours.reference_block.vlp_transformer.pooler.dense.weight
    assert pooler not in our_opt.state  # never had a gradient in the original either


def test_progress_and_final_files(trained):
    final = {k: v for k, v in trained[3].items() if k not in ("loss", "recall_at_10")}
    final |= {"epoch": 4, "final_loss": 1.5, "final_recall_at_10": 0.3, "best_recall": 0.4, "training_time": 12.0}
    out = convert_original(final, "final.pt", text_model=str(MINILM))
    assert (out["epoch"], out["loss"], out["recall_at_10"], out["best_recall"]) == (4, 1.5, 0.3, 0.4)
    assert out["original"]["training_time"] == 12.0 and out["val_recalls"] == [0.25]
    plain = convert_original(trained[3], "run.pt", text_model=str(MINILM))
    assert plain["best_recall"] == 0.25 and plain["train_losses"] == trained[3]["train_losses"]


def test_their_recalls_are_recorded_as_measured_by_their_protocol(trained):
    """train_optimized.py / resume_training.py files: their targets-of-the-validated-triplets protocol, and a
    OneCycleLR; a file of their plain train.py (Adam (0.55, 0.999), no weight decay, no scheduler; recall within
    each validation batch, at epoch 1 and every 5th) is told from its optimizer state."""
    ours = convert_original(trained[3], "optimized_model_epoch_1_recall_0.2500.pt", text_model=str(MINILM))
    assert (ours["val_protocols"], ours["best_protocol"], ours["original"]["constant_lr"]) == (
        ["original"],
        "original",
        False,
    )
    adam = torch.optim.Adam(trained[0].parameters(), lr=4e-4, betas=(0.55, 0.999)).state_dict()
    plain = {k: v for k, v in trained[3].items() if k != "scheduler_state_dict"}
    plain |= {"optimizer_state_dict": adam, "epoch": 10, "val_recalls": [0.1, 0.2, 0.15]}
    out = convert_original(plain, "model_epoch_10_recall_0.1500.pt", text_model=str(MINILM))
    assert out["val_protocols"] == ["original-within-batch"] * 3 and out["best_protocol"] == "original-within-batch"
    assert out["original"]["constant_lr"] and out["optimizer_state_dict"]["param_groups"][0]["betas"] == (0.55, 0.999)
    adamw_without_schedule = {k: v for k, v in trained[3].items() if k != "scheduler_state_dict"}
    assert not convert_original(adamw_without_schedule, "x.pt", text_model=str(MINILM))["original"]["constant_lr"]


def test_weights_only_file_converts_without_training_state(trained):
    bare = dict(trained[3]["model_state_dict"])
    assert is_original_checkpoint(bare)
    out = convert_original(bare, "fashion_vlp.pt", text_model=str(MINILM))
    assert out["optimizer_state_dict"] is None and out["scheduler_state_dict"] is None and out["epoch"] == 0
    assert (out["val_protocols"], out["best_protocol"], out["original"]["constant_lr"]) == ([], None, False)


def test_fashionrec_checkpoints_are_not_original(converted):
    assert not is_original_checkpoint(converted)
    assert not is_original_checkpoint({"model_state_dict": {"backbone.features.0.weight": torch.zeros(1)}})
    with pytest.raises(UserError, match="x.pt is not an original-format checkpoint"):
        convert_original({"model_state_dict": {"backbone.features.0.weight": torch.zeros(1)}}, "x.pt")


def edited(ckpt, drop=(), put=None):
    state = {k: v for k, v in ckpt["model_state_dict"].items() if k not in drop} | (put or {})
    return {**ckpt, "model_state_dict": state}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: edited(
                c, put={"_orig_mod.reference_block.feature_extractor.conv1.weight": torch.zeros(64, 3, 7, 7)}
            ),
            "run.pt: the two copies of the shared backbone differ at conv1.weight",
        ),
        (
            lambda c: edited(c, drop={"_orig_mod.reference_block.feature_extractor.bn1.bias"}),
            "run.pt: the shared backbone is listed twice but reference_block.feature_extractor.bn1.bias is missing",
        ),
        (
            lambda c: edited(c, drop={"_orig_mod.target_block.projection.weight"}),
            "run.pt does not match the original architecture: missing: target_block.projection.weight$",
        ),
        (
            lambda c: edited(c, put={"_orig_mod.reference_block.img_feat_proj.weight": torch.zeros(128, 1024)}),
            r"wrong shape: reference_block.img_feat_proj.weight \(128, 1024\) instead of \(128, 2048\)$",
        ),
        (
            lambda c: edited(c, put={"_orig_mod.target_block.extra.weight": torch.zeros(1)}),
            "unexpected: target_block.extra.weight$",
        ),
        (
            lambda c: edited(c, drop={"_orig_mod.reference_block.vlp_transformer.embeddings.word_embeddings.weight"}),
            "missing reference_block.vlp_transformer.embeddings.word_embeddings.weight$",
        ),
        (
            lambda c: {**c, "optimizer_state_dict": {**c["optimizer_state_dict"], "param_groups": []}},
            r"optimizer state is not the original's single AdamW group \(0 groups\)",
        ),
        (
            lambda c: {
                **c,
                "optimizer_state_dict": {
                    "state": c["optimizer_state_dict"]["state"],
                    "param_groups": [{**c["optimizer_state_dict"]["param_groups"][0], "params": list(range(10))}],
                },
            },
            "the optimizer holds 10 parameters but the weights have",
        ),
    ],
)
def test_wrong_or_partial_files_name_what_does_not_match(trained, change, message):
    with pytest.raises(UserError, match=message) as info:
        convert_original(change(trained[3]), "run.pt", text_model=str(MINILM))
    assert "\n" not in str(info.value)


def test_moments_of_the_wrong_shape_are_named(trained):
    ckpt = trained[3]
    state = dict(ckpt["optimizer_state_dict"]["state"])
    state[0] = {**state[0], "exp_avg": torch.zeros(3)}
    bad = {**ckpt, "optimizer_state_dict": {**ckpt["optimizer_state_dict"], "state": state}}
    with pytest.raises(UserError, match=r"optimizer exp_avg of target_block.feature_extractor.conv1.weight is \(3,\)"):
        convert_original(bad, "run.pt", text_model=str(MINILM))


def test_a_vocabulary_that_does_not_fit_the_embeddings(trained, tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]))
    with pytest.raises(UserError, match="word embeddings have 30522 rows but the vocabulary found has 5 tokens"):
        convert_original(trained[3], "run.pt", text_model=str(tmp_path))


def test_create_model_original_uses_the_bert_vocabulary():
    model = create_model("original", ["unused"], pretrained=False, text_model=str(MINILM))
    assert isinstance(model, OriginalFashionVLP) and model.tokenizer.vocab_size == 30522
    assert model.tokenizer.encode("is darker")[0][:4] == [101, 2003, 9904, 102]
    assert len(model.tokenizer.encode("is darker")[0]) == 100  # the original's padded length


def test_export_inverts_convert_key_for_key(trained, converted):
    """Their file -> fashionrec's layout -> their file: the same keys in the same order, equal tensors and
    values, loadable as their resume_training.py loads it (strictly, into the torch.compile'd model)."""
    theirs = trained[3]
    exported, notes = export_original(converted, "converted.pt")
    assert notes == [] and list(exported) == list(theirs)
    assert list(exported["model_state_dict"]) == list(theirs["model_state_dict"])
    assert all(torch.equal(v, theirs["model_state_dict"][k]) for k, v in exported["model_state_dict"].items())
    ours, saved = exported["optimizer_state_dict"], theirs["optimizer_state_dict"]
    assert ours["param_groups"] == saved["param_groups"] and ours["state"].keys() == saved["state"].keys()
    for pid, moments in saved["state"].items():
        assert moments.keys() == ours["state"][pid].keys()
        assert all(torch.equal(v, ours["state"][pid][k]) for k, v in moments.items()), pid
    assert exported["scheduler_state_dict"] == theirs["scheduler_state_dict"]
    assert {k: exported[k] for k in RUN_FIELDS} == {k: theirs[k] for k in RUN_FIELDS}

    exported = through_disk(exported)  # weights-only torch.load: plain tensors, numbers and lists
    model = Compiled(FashionVLP(BertConfig(**SMALL_BERT)))
    model.load_state_dict(exported["model_state_dict"], strict=True)
    optimizer = adamw(model.parameters())
    scheduler = onecycle(optimizer, total_steps=1000)  # their script's plan, replaced by the saved state
    optimizer.load_state_dict(exported["optimizer_state_dict"])
    scheduler.load_state_dict(exported["scheduler_state_dict"])
    assert (scheduler.total_steps, scheduler.last_epoch) == (TOTAL_STEPS, 2)  # their saved plan and position
    assert optimizer.param_groups[0]["lr"] == saved["param_groups"][0]["lr"]


RUN_FIELDS = ("epoch", "loss", "recall_at_10", "train_losses", "val_recalls")


@pytest.mark.parametrize("scheduler", [None, {"base_lrs": [3e-4], "last_epoch": 5, "lr_lambdas": [None]}])
def test_export_without_a_onecycle_state_leaves_it_out_and_says_so(converted, scheduler):
    exported, notes = export_original({**converted, "scheduler_state_dict": scheduler}, "run.pt")
    assert "scheduler_state_dict" not in exported and len(notes) == 1
    assert "written without scheduler state, so the original's resume_training.py builds a fresh OneCycleLR" in notes[0]


def test_export_of_a_used_up_onecycle_says_their_script_stops(converted):
    used_up = {**converted["scheduler_state_dict"], "last_epoch": TOTAL_STEPS}
    _, notes = export_original({**converted, "scheduler_state_dict": used_up}, "run.pt")
    assert notes == [f"its OneCycleLR has taken all {TOTAL_STEPS} of its steps: the original's resume_training.py "
                     "stops ('Tried to step') at its first optimizer step"]  # fmt: skip


def three_groups(ckpt):
    """The optimizer split as --backbone-lr / --text-lr split it: heads, backbone, text."""
    group = ckpt["optimizer_state_dict"]["param_groups"][0]
    params = group["params"]
    parts = [params[:10], params[10:20], params[20:]]
    return {**ckpt["optimizer_state_dict"], "param_groups": [{**group, "params": p} for p in parts]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: {**c, "optimizer_state_dict": three_groups(c)}, r"run.pt was trained with 3 learning-rate groups"),
        (lambda c: {**c, "model_config": {**c["model_config"], "preset": "paper"}}, r"of the 'paper' preset; only"),
        (lambda c: {**c, "samples_in_epoch": 6}, r"saved 6 samples into epoch 2; .* export an epoch-end checkpoint"),
    ],
)
def test_export_refuses_what_their_script_cannot_continue(converted, change, message):
    with pytest.raises(UserError, match=message) as info:
        export_original(change(converted), "run.pt")
    assert "\n" not in str(info.value)
