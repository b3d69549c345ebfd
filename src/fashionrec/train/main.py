"""`train` and `resume`: build everything from the settings (or a checkpoint), run the Trainer, report."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import torch

from fashionrec.data.cache import ImageCache
from fashionrec.errors import UserError
from fashionrec.model import create_model
from fashionrec.model.fashionvlp import FashionVLP
from fashionrec.model.hub import load_state_strict, model_from_checkpoint
from fashionrec.train import distributed
from fashionrec.train.checkpoint import RESUME_PREFIX, TRAIN_PREFIX, CheckpointManager, load_checkpoint
from fashionrec.train.data import TrainingData, build_cache, load_training_data
from fashionrec.train.distributed import DistContext
from fashionrec.train.logs import RunLog
from fashionrec.train.params import TrainConfig, merge_resume_config
from fashionrec.train.schedule import (
    continuation_spec,
    onecycle_spec,
    peak_lr,
    schedule_end_step,
    steps_per_epoch,
    warmup_end_step,
)
from fashionrec.train.trainer import Trainer, TrainingStopped


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def use_deterministic_kernels(enabled: bool) -> None:
    """Bit-exact GPU runs need deterministic kernels; cuBLAS also needs a fixed workspace (set before
    its first use)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def remaining_steps(cfg: TrainConfig, rank_samples: int, epochs_done: int, samples_in_epoch: int) -> int:
    """Optimizer steps from a position (epochs done + samples into the next epoch) to the end of the run."""
    per_epoch = steps_per_epoch(rank_samples, cfg.batch, cfg.gradient_accumulation)
    partial = (
        steps_per_epoch(rank_samples - samples_in_epoch, cfg.batch, cfg.gradient_accumulation)
        if samples_in_epoch
        else 0
    )
    full_epochs = cfg.epochs - epochs_done - (1 if samples_in_epoch else 0)
    return partial + max(full_epochs, 0) * per_epoch


def _on_epoch(log: RunLog, say):
    def report(trainer: Trainer, info: dict[str, Any]) -> None:
        p = trainer.progress
        avg = info["metrics"]["average"]
        say(
            f"epoch {p.epoch}/{trainer.cfg.epochs}: loss {p.train_losses[-1]:.4f}  "
            f"R@10 {100 * avg['recall_at_10']:.2f}%  R@50 {100 * avg['recall_at_50']:.2f}%  "
            f"({info['epoch_time_s']:.1f} s)  -> {trainer.last_checkpoint.name if trainer.last_checkpoint else '-'}"
        )
        log.event(
            "epoch",
            epoch=p.epoch,
            loss=p.train_losses[-1],
            metrics=info["metrics"],
            epoch_time_s=info["epoch_time_s"],
            lr=trainer.optimizer.param_groups[0]["lr"],
            checkpoint=str(trainer.last_checkpoint) if trainer.last_checkpoint else None,
        )
        log.plot(p.train_losses, p.val_recalls, p.val_recalls_at_50)

    return report


def _run(trainer: Trainer, log: RunLog, say) -> Path | None:
    try:
        trainer.fit(on_epoch=_on_epoch(log, say))
    except TrainingStopped as e:
        say(f"{e}; checkpoint: {trainer.last_checkpoint}")
        log.event("stopped", checkpoint=str(trainer.last_checkpoint))
        raise SystemExit(143) from None
    p = trainer.progress
    if p.epoch >= trainer.cfg.epochs:
        say(f"done: {p.epoch} epochs, best R@10 {100 * p.best_recall:.2f}%")
        log.event("done", epoch=p.epoch, best_recall=p.best_recall)
    return trainer.last_checkpoint


def _shared_cache(cfg: TrainConfig, data: TrainingData, image_size: int, dist: DistContext) -> ImageCache:
    """Rank 0 builds the preprocessing cache while the others wait; then every rank opens it."""
    cache = build_cache(cfg, data, image_size) if dist.is_main else None
    dist.barrier()
    return cache or build_cache(cfg, data, image_size)


def run_train(cfg: TrainConfig) -> Path | None:
    dist = distributed.setup(cfg.device)
    say = dist.printer()
    device = dist.device or resolve_device(cfg.device)
    use_deterministic_kernels(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    data = load_training_data(cfg, say)
    model = create_model(cfg.preset, data.train_texts(), cfg.pretrained, cfg.text_model, cfg.backbone_weights)
    model.config.preprocess = {"crop": cfg.crop, "landmarks": cfg.landmarks, "yolo_weights": cfg.yolo_weights}
    model = dist.model_from_rank0(model)
    dist.seed_rank(cfg.seed)
    cache = _shared_cache(cfg, data, model.config.image_size, dist)
    rank_samples = math.ceil(len(data.triplets()) / dist.world_size)
    spec = onecycle_spec(cfg.lr, remaining_steps(cfg, rank_samples, 0, 0))
    manager = CheckpointManager(cfg.output_dir, TRAIN_PREFIX, cfg.keep_last) if dist.is_main else None
    trainer = Trainer(cfg, model, data, cache, device, manager, spec, say, dist)
    log = RunLog(cfg.output_dir, dist.is_main)
    say(
        f"training {cfg.preset} on {device}: {len(data.triplets())} triplets, batch {cfg.batch} x "
        f"{cfg.gradient_accumulation} accumulation x {dist.world_size} ranks, {cfg.epochs} epochs, "
        f"{spec['total_steps']} optimizer steps, peak LR {cfg.lr:g}"
    )
    log.event("start", config=cfg.to_dict(), world_size=dist.world_size)
    try:
        return _run(trainer, log, say)
    finally:
        dist.close()


def _original_schedule(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The schedule of a checkpoint without our `schedule` key: the original system's OneCycleLR."""
    state = ckpt.get("scheduler_state_dict")
    groups = (ckpt.get("optimizer_state_dict") or {}).get("param_groups") or []
    if not state or "total_steps" not in state or not groups or "max_lr" not in groups[0]:
        return None
    return onecycle_spec(groups[0]["max_lr"], state["total_steps"])


def _model_for_resume(ckpt: dict[str, Any], cfg: TrainConfig, source: Path, train_texts: list[str]) -> FashionVLP:
    if "model_config" in ckpt:
        model = model_from_checkpoint(ckpt, str(source))
        if model.config.preset != cfg.preset:
            raise UserError(
                f"--preset {cfg.preset} contradicts the checkpoint, which holds a {model.config.preset} model"
            )
        return model
    # An original-format checkpoint: rebuild the architecture of the preset the user names, then load strictly.
    model = create_model(cfg.preset, train_texts, pretrained=False, text_model=cfg.text_model)
    load_state_strict(model, ckpt["model_state_dict"], str(source))
    return model


def run_resume(args: argparse.Namespace) -> Path | None:
    dist = distributed.setup(args.device or "auto")
    say = dist.printer()
    ckpt, source = load_checkpoint(args.checkpoint, say)
    saved = ckpt.get("train_config")
    if saved is None and args.preset is None:
        raise UserError(f"{source} is an original-format checkpoint (no settings inside): pass --preset")
    cfg, changed = merge_resume_config(args, saved)
    if args.output_dir is None:
        cfg.output_dir = str(source.parent)
    done = int(ckpt["epoch"])
    samples_in = int(ckpt.get("samples_in_epoch", 0))
    if cfg.epochs <= done:
        message = f"{source.name} has {done} epochs complete and --epochs is {cfg.epochs}: nothing to train"
        if cfg.epochs < done:
            raise UserError(message + "; pass a larger --epochs to train further (nothing was written)")
        say(message + " (nothing was written)")
        return None

    device = dist.device or resolve_device(cfg.device)
    use_deterministic_kernels(cfg.deterministic)
    data = load_training_data(cfg, say)
    model = _model_for_resume(ckpt, cfg, source, data.train_texts())
    dist.seed_rank(cfg.seed)  # ranks with a saved RNG state get it back in load_state
    cache = _shared_cache(cfg, data, model.config.image_size, dist)

    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != dist.world_size:
        say(
            f"warning: checkpoint was written by {saved_world} ranks, resuming on {dist.world_size}: "
            "the data order of the remaining epochs changes (the run is no longer bit-exact)"
        )
        samples_in = samples_in * saved_world // dist.world_size
        ckpt["samples_in_epoch"] = samples_in
    rank_samples = math.ceil(len(data.triplets()) / dist.world_size)
    old = ckpt.get("schedule") or _original_schedule(ckpt)
    groups = (ckpt.get("optimizer_state_dict") or {}).get("param_groups") or []
    lr_override = "lr" in changed  # --lr equal to the checkpoint's own setting changes nothing
    lr_now = float(groups[0]["lr"]) if groups else cfg.lr
    global_step = int(ckpt.get("global_step", (ckpt.get("scheduler_state_dict") or {}).get("last_epoch", 0)))
    ckpt["global_step"] = global_step
    left = remaining_steps(cfg, rank_samples, done, samples_in)
    keep = (
        old is not None
        and ckpt.get("scheduler_state_dict") is not None
        and not lr_override
        and schedule_end_step(old) == global_step + left
    )
    if keep:
        spec = old
        policy = "schedule kept as saved"
    else:
        warm = max(warmup_end_step(old) - global_step, 0) if old else 0
        peak = cfg.lr if lr_override else (peak_lr(old) if old and warm else lr_now)
        spec = continuation_spec(lr_now, peak, warm, left, global_step)
        why = [
            w
            for w, hit in (
                ("no scheduler state in the checkpoint", old is None or not ckpt.get("scheduler_state_dict")),
                ("--lr given", lr_override),
                ("the plan changed", old is not None and schedule_end_step(old) != global_step + left),
            )
            if hit
        ]
        policy = (
            f"new continuation schedule ({', '.join(why)}): LR {lr_now:.3g} -> peak {peak:.3g} "
            f"-> {spec['end_lr']:.3g} over the remaining {left} steps"
        )
    for key in ("batch", "gradient_accumulation"):
        if saved is not None and key in changed:
            say(
                f"warning: --{key.replace('_', '-')} differs from the checkpoint's ({saved[key]} -> "
                f"{getattr(cfg, key)}); the schedule is re-sized to the remaining steps"
            )

    manager = (
        CheckpointManager(cfg.output_dir, RESUME_PREFIX, cfg.keep_last, protected=source) if dist.is_main else None
    )
    trainer = Trainer(cfg, model, data, cache, device, manager, spec, say, dist)
    trainer.load_state(ckpt, keep_schedule=keep)
    p = trainer.progress
    where = f"epoch {p.epoch} complete" + (
        f", {p.samples_in_epoch} samples into epoch {p.epoch + 1}" if p.samples_in_epoch else ""
    )
    best = f"{100 * p.best_recall:.2f}%" if p.best_recall >= 0 else "none yet"
    say(
        f"resuming from {source} ({where}, step {p.global_step}); previous best R@10 {best}; "
        f"LR {trainer.optimizer.param_groups[0]['lr']:.3g}; {policy}"
    )
    log = RunLog(cfg.output_dir, dist.is_main)
    log.event(
        "resume",
        checkpoint=str(source),
        epoch=p.epoch,
        samples_in_epoch=p.samples_in_epoch,
        global_step=p.global_step,
        best_recall=p.best_recall,
        lr=trainer.optimizer.param_groups[0]["lr"],
        schedule=spec,
        changed=changed,
        config=cfg.to_dict(),
    )
    try:
        return _run(trainer, log, say)
    finally:
        dist.close()
