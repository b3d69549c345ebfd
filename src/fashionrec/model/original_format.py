"""Checkpoints written by the original public system (`train.py`, `train_optimized.py`, `resume_training.py`),
turned into fashionrec's checkpoint layout for the `original` preset. Nothing here reads or writes files.

What such a file holds: `model_state_dict` (keys prefixed `_orig_mod.` after torch.compile, `module.` after
DataParallel, or neither; the shared ResNet-50 listed twice), `optimizer_state_dict` (one AdamW group over
`model.parameters()` in registration order, which lists the shared backbone once), `scheduler_state_dict`
(OneCycleLR), `epoch`, `train_losses`, `val_recalls`, and `loss` / `recall_at_10`, or for final files
`final_loss`, `final_recall_at_10`, `best_recall`, `training_time`. A bare state dict (what the original's
feature extractor also accepts) is read as `model_state_dict` alone.
"""

from __future__ import annotations

from typing import Any

import torch

from fashionrec.bertvocab import BERT_UNCASED, find_vocab
from fashionrec.errors import UserError
from fashionrec.model.checkpoint_format import strip_wrappers
from fashionrec.model.families.fashionvlp import FashionVLPConfig
from fashionrec.model.families.original import original
from fashionrec.model.original import OriginalFashionVLP
from fashionrec.model.tokenizer import TextTokenizer

BLOCKS = ("target_block.", "reference_block.")
KEPT_COPY = "target_block.feature_extractor."  # the name model.named_parameters() gives the shared backbone
SECOND_COPY = "reference_block.feature_extractor."
BERT = "reference_block.vlp_transformer."
# Index buffers some transformers versions saved with the weights; BertModel rebuilds them, nothing trains them.
REBUILT_BUFFERS = (BERT + "embeddings.position_ids", BERT + "embeddings.token_type_ids")
# Facts about the run kept for information under "original" (fashionrec's own fields get the rest).
RUN_FACTS = ("loss", "recall_at_10", "final_loss", "final_recall_at_10", "best_recall", "training_time")


def _model_state(ckpt: dict[str, Any]) -> Any:
    if "model_state_dict" in ckpt:
        return ckpt["model_state_dict"]
    return ckpt if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else None


def is_original_checkpoint(ckpt: Any) -> bool:
    """A dict in the original's format (or its bare state dict): its weights carry the original's block names,
    and it has none of fashionrec's `model_config`."""
    if not isinstance(ckpt, dict) or "model_config" in ckpt:
        return False
    state = _model_state(ckpt)
    return isinstance(state, dict) and any(isinstance(k, str) and strip_wrappers(k).startswith(BLOCKS) for k in state)


def convert_original(ckpt: dict[str, Any], source: str, text_model: str | None = None) -> dict[str, Any]:
    """fashionrec's checkpoint layout for an original-format `ckpt` (see `is_original_checkpoint`): model weights
    under our names, the backbone tied, AdamW moments re-indexed to our `parameters()` order, OneCycleLR state
    as saved, progress counters, `model_config` and `tokenizer` (bert-base-uncased's vocabulary, found as
    `bertvocab.find_vocab(text_model)` says). Anything that does not fit raises one UserError line."""
    if not is_original_checkpoint(ckpt):
        raise UserError(f"{source} is not an original-format checkpoint (no target_block./reference_block. weights)")
    raw = _model_state(ckpt)
    order = [strip_wrappers(k) for k in raw]  # the original's registration order, as torch.save kept it
    state = _tie_backbone(dict(zip(order, raw.values(), strict=True)), source)
    config = _config_from_weights(state, source)
    tokenizer = TextTokenizer.from_vocab(find_vocab(text_model), config.max_text_len)
    if tokenizer.vocab_size != config.text["vocab_size"]:
        raise UserError(
            f"{source}: its word embeddings have {config.text['vocab_size']} rows but the vocabulary found has "
            f"{tokenizer.vocab_size} tokens; pass --text-model FOLDER holding {BERT_UNCASED}'s vocab.txt"
        )
    config.text_model = text_model or BERT_UNCASED
    with torch.device("meta"):  # names, shapes and parameter order only: no memory, no initialisation cost
        skeleton = OriginalFashionVLP(config, tokenizer)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    problem = _mismatch(expected, state)
    if problem:
        raise UserError(f"{source} does not match the original architecture: {problem}")
    names = [name for name, _ in skeleton.named_parameters()]
    scheduler = ckpt.get("scheduler_state_dict")
    val_recalls = [float(r) for r in ckpt.get("val_recalls", [])]
    best = ckpt.get("best_recall", max(val_recalls, default=-1.0))
    return {
        "model_state_dict": {k: state[k] for k in expected},
        "optimizer_state_dict": _adamw_state(ckpt.get("optimizer_state_dict"), order, names, expected, source),
        "scheduler_state_dict": scheduler,
        "epoch": int(ckpt.get("epoch", 0)),
        "global_step": int(scheduler.get("last_epoch", 0)) if isinstance(scheduler, dict) else 0,
        "train_losses": [float(x) for x in ckpt.get("train_losses", [])],
        "val_recalls": val_recalls,
        "best_recall": float(best),
        "loss": ckpt.get("loss", ckpt.get("final_loss")),
        "recall_at_10": ckpt.get("recall_at_10", ckpt.get("final_recall_at_10")),
        "model_config": config.to_dict(),
        "tokenizer": tokenizer.to_json(),
        "original": {"source": source, **{k: ckpt[k] for k in RUN_FACTS if k in ckpt}},
    }


def _tie_backbone(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Drop the second listing of the shared ResNet-50 after checking it is the same tensors as the first."""
    second = {k[len(SECOND_COPY) :]: v for k, v in state.items() if k.startswith(SECOND_COPY)}
    first = {k[len(KEPT_COPY) :]: v for k, v in state.items() if k.startswith(KEPT_COPY)}
    if second:
        for name in sorted(set(first) ^ set(second)):
            holder = KEPT_COPY if name in second else SECOND_COPY
            raise UserError(f"{source}: the shared backbone is listed twice but {holder}{name} is missing")
        for name, value in second.items():
            if value.shape != first[name].shape or not torch.equal(value, first[name]):
                raise UserError(
                    f"{source}: the two copies of the shared backbone differ at {name} ({KEPT_COPY}* vs "
                    f"{SECOND_COPY}*); the original shares one ResNet-50, so these weights are not its"
                )
    return {k: v for k, v in state.items() if not k.startswith(SECOND_COPY) and k not in REBUILT_BUFFERS}


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise UserError(f"{source} does not match the original architecture: missing {key}")
    return tuple(state[key].shape)


def _config_from_weights(state: dict[str, torch.Tensor], source: str) -> FashionVLPConfig:
    """The `original` preset with BERT's sizes read off the weights (bert-base-uncased for every real run).
    Head count is not in any shape: it is hidden / 64, as in every released BERT (12 for bert-base)."""
    vocab, hidden = _shape(state, BERT + "embeddings.word_embeddings.weight", source)
    layers = {k[len(BERT + "encoder.layer.") :].split(".")[0] for k in state if k.startswith(BERT + "encoder.layer.")}
    config = original()
    config.text = {
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "num_attention_heads": hidden // 64 if hidden % 64 == 0 else 1,
        "intermediate_size": _shape(state, BERT + "encoder.layer.0.intermediate.dense.weight", source)[0],
        "max_position_embeddings": _shape(state, BERT + "embeddings.position_embeddings.weight", source)[0],
        "type_vocab_size": _shape(state, BERT + "embeddings.token_type_embeddings.weight", source)[0],
        "vocab_size": vocab,
    }
    return config


def _mismatch(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> str | None:
    """Keys the original architecture has and the file lacks, the reverse, and shape differences; None if none."""
    problems = {
        "missing": [k for k in expected if k not in state],
        "unexpected": [k for k in state if k not in expected],
        "wrong shape": [
            f"{k} {tuple(state[k].shape)} instead of {expected[k]}"
            for k in expected
            if k in state and tuple(state[k].shape) != expected[k]
        ],
    }
    parts = [
        f"{title}: {', '.join(keys[:5])}" + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        for title, keys in problems.items()
        if keys
    ]
    return "; ".join(parts) or None


def _adamw_state(
    saved: Any, order: list[str], names: list[str], shapes: dict[str, tuple[int, ...]], source: str
) -> dict[str, Any] | None:
    """The original's AdamW state re-indexed to `names` (our parameters() order). Its one group lists
    parameters in the original's registration order: the saved state-dict order with buffers and the
    backbone's second listing left out. Parameters that never had a gradient (BERT's pooler) have no state."""
    if saved is None:
        return None
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(saved.get("state"), dict):
        found = len(groups) if isinstance(groups, list) else "no"
        raise UserError(f"{source}: optimizer state is not the original's single AdamW group ({found} groups)")
    wanted = set(names)
    original_order = [k for k in order if k in wanted]
    ids = list(groups[0].get("params", []))
    if len(ids) != len(original_order):
        raise UserError(
            f"{source}: the optimizer holds {len(ids)} parameters but the weights have {len(original_order)}; "
            "the optimizer state does not belong to these weights"
        )
    position = {name: i for i, name in enumerate(names)}
    state: dict[int, dict[str, Any]] = {}
    for pid, name in zip(ids, original_order, strict=True):
        if pid not in saved["state"]:
            continue
        moments = dict(saved["state"][pid])
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in moments or tuple(moments[key].shape) != shapes[name]:
                got = tuple(moments[key].shape) if key in moments else "nothing"
                raise UserError(f"{source}: optimizer {key} of {name} is {got}, expected {shapes[name]}")
        state[position[name]] = moments
    stray = set(saved["state"]) - set(ids)
    if stray:
        raise UserError(f"{source}: optimizer state for parameter ids {sorted(stray)[:5]} outside its group")
    return {"state": state, "param_groups": [{**groups[0], "params": list(range(len(names)))}]}
