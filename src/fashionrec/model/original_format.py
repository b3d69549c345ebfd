"""Checkpoints written by the original public system (`train.py`, `train_optimized.py`, `resume_training.py`),
turned into fashionrec's checkpoint layout for the `original` preset (`convert_original`), and back
(`export_original`). Nothing here reads or writes files.

What such a file holds: `model_state_dict` (keys prefixed `_orig_mod.` after torch.compile, `module.` after
DataParallel, or neither; the shared ResNet-50 listed twice), `optimizer_state_dict` (one AdamW group over
`model.parameters()` in registration order, which lists the shared backbone once), `scheduler_state_dict`
(OneCycleLR), `epoch`, `train_losses`, `val_recalls`, and `loss` / `recall_at_10`, or for final files
`final_loss`, `final_recall_at_10`, `best_recall`, `training_time`. A bare state dict (what the original's
feature extractor also accepts) is read as `model_state_dict` alone. Files of their first, plain `train.py`
(Adam, constant LR, no scheduler state) are told apart by their optimizer state (`trained_at_constant_lr`),
and each file's `val_recalls` are recorded with the protocol that measured them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fashionrec.bertvocab import BERT_UNCASED, find_vocab
from fashionrec.errors import UserError
from fashionrec.model.checkpoint_format import WRAPPER_PREFIXES, strip_wrappers
from fashionrec.model.config import ModelConfig
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
# How their `val_recalls` were measured. `train_optimized.py`, `resume_training.py` and the later `train.py`:
# each query's target ranked among the targets of the validated triplets (fashionrec's `--validation
# original`). Their first, plain `train.py`: Recall@10 within each validation batch, averaged over batches.
ORIGINAL_PROTOCOL = "original"
WITHIN_BATCH_PROTOCOL = "original-within-batch"
# What OneCycleLR writes into the optimizer's group; a run that never had a scheduler has none of it.
SCHEDULER_GROUP_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


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
    expected, names = _skeleton(config, tokenizer)
    problem = _mismatch(expected, state)
    if problem:
        raise UserError(f"{source} does not match the original architecture: {problem}")
    scheduler = ckpt.get("scheduler_state_dict")
    val_recalls = [float(r) for r in ckpt.get("val_recalls", [])]
    best = ckpt.get("best_recall", max(val_recalls, default=-1.0))
    constant = trained_at_constant_lr(ckpt)
    protocol = WITHIN_BATCH_PROTOCOL if constant else ORIGINAL_PROTOCOL
    return {
        "model_state_dict": {k: state[k] for k in expected},
        "optimizer_state_dict": _adamw_state(ckpt.get("optimizer_state_dict"), order, names, expected, source),
        "scheduler_state_dict": scheduler,
        "epoch": int(ckpt.get("epoch", 0)),
        "global_step": int(scheduler.get("last_epoch", 0)) if isinstance(scheduler, dict) else 0,
        "train_losses": [float(x) for x in ckpt.get("train_losses", [])],
        "val_recalls": val_recalls,
        "val_protocols": [protocol] * len(val_recalls),
        "best_recall": float(best),
        "best_protocol": protocol if val_recalls or "best_recall" in ckpt else None,
        "loss": ckpt.get("loss", ckpt.get("final_loss")),
        "recall_at_10": ckpt.get("recall_at_10", ckpt.get("final_recall_at_10")),
        "model_config": config.to_dict(),
        "tokenizer": tokenizer.to_json(),
        "original": {"source": source, "constant_lr": constant, **{k: ckpt[k] for k in RUN_FACTS if k in ckpt}},
    }


def _skeleton(config: ModelConfig, tokenizer: TextTokenizer) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """The `original` model's state-dict shapes (in its order) and its parameters() names, without building it."""
    with torch.device("meta"):  # names, shapes and parameter order only: no memory, no initialisation cost
        skeleton = OriginalFashionVLP(config, tokenizer)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, [n for n, _ in skeleton.named_parameters()]


def _their_state_order(keys: Sequence[str]) -> list[str]:
    """The original's state-dict keys for ours, in its order: the shared backbone is listed again, under the
    reference block, before the reference block's own modules (their registration order)."""
    backbone = [SECOND_COPY + k[len(KEPT_COPY) :] for k in keys if k.startswith(KEPT_COPY)]
    first = next((i for i, k in enumerate(keys) if k.startswith(BLOCKS[1])), len(keys))
    return [*keys[:first], *backbone, *keys[first:]]


def _parameter_order(state_order: Sequence[str], names: Sequence[str]) -> list[str]:
    """The original's parameters() order (what its AdamW state is indexed by): its state-dict order with
    buffers and the backbone's second listing left out."""
    wanted = set(names)
    return [k for k in state_order if k in wanted]


def _reindex(state: Mapping[int, Any], ids: Sequence[int], old: Sequence[str], new: Sequence[str]) -> dict[int, Any]:
    """Per-parameter optimizer state keyed by position in `new` instead of by `ids` (`ids[j]` is `old[j]`'s);
    parameters without state (never had a gradient) stay without."""
    position = {name: i for i, name in enumerate(new)}
    return {position[name]: dict(state[pid]) for pid, name in zip(ids, old, strict=True) if pid in state}


def trained_at_constant_lr(ckpt: dict[str, Any]) -> bool:
    """A file of their plain `train.py`: Adam (betas (0.55, 0.999), no weight decay) at a constant LR of 4e-4,
    told by its optimizer state: no scheduler state, and none of the entries a scheduler writes into the
    optimizer's group, and no weight decay (their later scripts use AdamW with 0.01 and a OneCycleLR)."""
    optimizer = ckpt.get("optimizer_state_dict")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if ckpt.get("scheduler_state_dict") or not isinstance(groups, list) or len(groups) != 1:
        return False
    group = groups[0]
    return not any(key in group for key in SCHEDULER_GROUP_KEYS) and group.get("weight_decay", 0) == 0


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
    original_order = _parameter_order(order, names)
    ids = list(groups[0].get("params", []))
    if len(ids) != len(original_order):
        raise UserError(
            f"{source}: the optimizer holds {len(ids)} parameters but the weights have {len(original_order)}; "
            "the optimizer state does not belong to these weights"
        )
    state = _reindex(saved["state"], ids, original_order, names)
    for pid in sorted(state):
        name, moments = names[pid], state[pid]
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in moments or tuple(moments[key].shape) != shapes[name]:
                got = tuple(moments[key].shape) if key in moments else "nothing"
                raise UserError(f"{source}: optimizer {key} of {name} is {got}, expected {shapes[name]}")
    stray = set(saved["state"]) - set(ids)
    if stray:
        raise UserError(f"{source}: optimizer state for parameter ids {sorted(stray)[:5]} outside its group")
    return {"state": state, "param_groups": [{**groups[0], "params": list(range(len(names)))}]}


def export_original(ckpt: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The original's checkpoint layout for a fashionrec checkpoint of the `original` preset (the inverse of
    `convert_original`), and notes for the user: what the original's `resume_training.py` loads strictly into
    its torch.compile'd model and continues. Weights under `_orig_mod.` with the shared backbone listed under
    both blocks; AdamW state re-indexed to the original's parameters() order; OneCycleLR state when the run
    has one (another schedule has no counterpart there, and their script builds a fresh OneCycleLR); `epoch`,
    `loss`, `recall_at_10` (numbers) and the histories. Plain tensors, numbers, strings and lists only."""
    config = ckpt.get("model_config") or {}
    if config.get("preset") != "original":
        preset = config.get("preset")
        what = f"the {preset!r} preset" if preset else "no known preset (saved without settings)"
        raise UserError(f"{source} is a model of {what}; only the `original` preset has the original system's model")
    optimizer = ckpt.get("optimizer_state_dict")
    groups = (optimizer or {}).get("param_groups") or []
    if len(groups) > 1:
        raise UserError(
            f"{source} was trained with {len(groups)} learning-rate groups (--backbone-lr / --text-lr); the "
            "original's resume_training.py builds one AdamW group over the whole model"
        )
    if int(ckpt.get("samples_in_epoch") or 0) > 0:
        raise UserError(
            f"{source} was saved {ckpt['samples_in_epoch']} samples into epoch {int(ckpt['epoch']) + 1}; the "
            "original's resume_training.py restarts at an epoch's beginning: export an epoch-end checkpoint"
        )
    model_config = ModelConfig.from_dict(config)
    tokenizer = TextTokenizer.from_json(ckpt["tokenizer"], model_config.max_text_len)
    shapes, names = _skeleton(model_config, tokenizer)
    state = {strip_wrappers(k): v for k, v in ckpt["model_state_dict"].items()}
    problem = _mismatch(shapes, state)
    if problem:
        raise UserError(f"{source} does not match the original architecture: {problem}")
    order = _their_state_order(list(shapes))
    weights = {f"{WRAPPER_PREFIXES[0]}{k}": state[k.replace(SECOND_COPY, KEPT_COPY, 1)] for k in order}
    out: dict[str, Any] = {"epoch": int(ckpt.get("epoch", 0)), "model_state_dict": weights}
    if groups:
        if len(groups[0]["params"]) != len(names):
            count = len(groups[0]["params"])
            raise UserError(f"{source}: its optimizer holds {count} parameters, the model {len(names)}")
        theirs = _parameter_order(order, names)
        out["optimizer_state_dict"] = {
            "state": _reindex(optimizer["state"], groups[0]["params"], names, theirs),
            "param_groups": [{**groups[0], "params": list(range(len(theirs)))}],
        }
    notes = []
    scheduler = ckpt.get("scheduler_state_dict")
    if isinstance(scheduler, dict) and {"total_steps", "_schedule_phases"} <= scheduler.keys():
        out["scheduler_state_dict"] = scheduler
        if int(scheduler.get("last_epoch", 0)) >= int(scheduler["total_steps"]):
            notes.append(
                f"its OneCycleLR has taken all {scheduler['total_steps']} of its steps: the original's "
                "resume_training.py stops ('Tried to step') at its first optimizer step"
            )
    else:
        why = "has no scheduler state" if not scheduler else "follows a schedule other than OneCycleLR"
        notes.append(
            f"{source} {why}: written without scheduler state, so the original's resume_training.py builds a "
            "fresh OneCycleLR over the epochs that remain"
        )
    losses = [float(x) for x in ckpt.get("train_losses") or []]
    recalls = [float(x) for x in ckpt.get("val_recalls") or []]
    out |= {
        "loss": _number(ckpt.get("loss"), losses),
        "recall_at_10": _number(ckpt.get("recall_at_10"), recalls),
        "train_losses": losses,
        "val_recalls": recalls,
    }
    return out, notes


def _number(value: Any, history: list[float]) -> float:
    """A figure the original prints with `:.4f`: the value, else the history's last, else NaN (never None)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return history[-1] if history else math.nan
