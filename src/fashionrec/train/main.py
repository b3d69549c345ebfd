"""`train` and `resume`: build everything from the settings (or a checkpoint), run the Trainer, report."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fashionrec.data.cache import ImageCache
from fashionrec.data.features import CachedFeatures
from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.device import resolve_device, set_threads
from fashionrec.errors import UserError
from fashionrec.model import create_model
from fashionrec.model.checkpoint_format import Checkpoint, load_state_strict
from fashionrec.model.factory import FashionModel
from fashionrec.options import DEFAULT_DEVICE
from fashionrec.train import distributed
from fashionrec.train.checkpoint import RESUME_PREFIX, TRAIN_PREFIX, CheckpointManager, load_checkpoint
from fashionrec.train.data import TrainingData, build_cache, load_training_data, run_preprocessing
from fashionrec.train.distributed import DistContext
from fashionrec.train.features import build_features, cacheable_parts, run_texts
from fashionrec.train.logs import RunLog
from fashionrec.train.optim import frozen_parts
from fashionrec.train.params import TrainConfig
from fashionrec.train.resume_plan import Saved, plan_resume, resume_settings
from fashionrec.train.schedule import current_beta1, current_lr, first_schedule
from fashionrec.train.trainer import Trainer, TrainingStopped, amp_settings, precision_name


def use_deterministic_kernels(enabled: bool) -> None:
    """Bit-exact GPU runs need deterministic kernels; cuBLAS also needs a fixed workspace (set before
    its first use)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


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


def _shared_cache(cfg: TrainConfig, data: TrainingData, preprocess: PreprocessConfig, dist: DistContext) -> ImageCache:
    """Rank 0 builds the preprocessing cache while the others wait; then every rank opens it."""
    cache = build_cache(cfg, data, preprocess) if dist.is_main else None
    dist.barrier()
    return cache or build_cache(cfg, data, preprocess)


def _shared_features(
    cfg: TrainConfig,
    model: FashionModel,
    data: TrainingData,
    cache: ImageCache,
    device: torch.device,
    dist: DistContext,
    say: Callable[[str], None],
) -> CachedFeatures | None:
    """The frozen parts' outputs (train/features.py): rank 0 computes what is missing while the others wait,
    then every rank reads them, under rank 0's cache names (the other ranks get its weights only when DDP
    wraps the model)."""
    frozen = frozen_parts(model, cfg)
    if not cacheable_parts(model, frozen):
        return None
    queries = data.triplets() + [t for split in data.val_splits.values() for t in split.triplets]
    inputs = (data.image_paths(cfg.path_folder), cache, run_texts(queries, cfg.seed, cfg.epochs))
    args = (model, frozen, cfg.cache_dir, *inputs, device, cfg.batch, say)
    features, keys = build_features(*args) if dist.is_main else (None, None)
    keys = dist.from_rank0(keys)
    return features if dist.is_main else build_features(*args, keys=keys)[0]


def run_train(cfg: TrainConfig) -> Path | None:
    set_threads(cfg.threads)
    dist = distributed.setup(cfg.device)
    say = dist.printer()
    device = dist.device or resolve_device(cfg.device)
    use_deterministic_kernels(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    data = load_training_data(cfg, say)
    model = create_model(
        cfg.preset,
        data.train_texts(),
        cfg.pretrained,
        model=cfg.model,
        text_model=cfg.text_model,
        backbone_weights=cfg.backbone_weights,
    )
    frozen_parts(model, cfg)  # a run with nothing to train stops here, before any preprocessing
    preprocess = run_preprocessing(cfg, model.config)
    model = dist.model_from_rank0(model)
    dist.seed_rank(cfg.seed)
    cache = _shared_cache(cfg, data, preprocess, dist)
    features = _shared_features(cfg, model, data, cache, device, dist, say)
    rank_samples = math.ceil(len(data.triplets()) / dist.world_size)
    spec = first_schedule(cfg, rank_samples)
    manager = CheckpointManager(cfg.output_dir, TRAIN_PREFIX, cfg.keep_last) if dist.is_main else None
    trainer = Trainer(cfg, model, data, cache, device, manager, spec, say, dist, features)
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


def _model_for_resume(ckpt: Checkpoint, cfg: TrainConfig, train_texts: list[str]) -> FashionModel:
    if not ckpt.is_original:
        model = ckpt.build_model()
        if model.config.preset != cfg.preset:
            raise UserError(
                f"--preset {cfg.preset} contradicts the checkpoint, which holds a {model.config.preset} model"
            )
        return model
    # An original-format checkpoint: rebuild the architecture of the preset the user names, then load strictly.
    model = create_model(cfg.preset, train_texts, pretrained=False, model=cfg.model, text_model=cfg.text_model)
    load_state_strict(model, ckpt.model_state, str(ckpt.path))
    return model


def run_resume(checkpoint: str, explicit: dict[str, Any]) -> Path | None:
    """Continue the run of `checkpoint` (a file, or a folder: its newest valid file) with the settings the
    user gave on the command line (`explicit`) over the checkpoint's own."""
    dist = distributed.setup(explicit.get("device", DEFAULT_DEVICE))
    say = dist.printer()
    ckpt = load_checkpoint(checkpoint, say, explicit.get("text_model"))
    saved = Saved.from_checkpoint(ckpt)
    cfg, changed = resume_settings(saved, explicit, str(ckpt.path.parent))
    if cfg.epochs == saved.epoch:
        say(
            f"{ckpt.path.name} has {saved.epoch} epochs complete and --epochs is {cfg.epochs}: "
            "nothing to train (nothing was written)"
        )
        return None
    threads = set_threads(cfg.threads)

    device = dist.device or resolve_device(cfg.device)
    use_deterministic_kernels(cfg.deterministic)
    data = load_training_data(cfg, say)
    model = _model_for_resume(ckpt, cfg, data.train_texts())
    preprocess = run_preprocessing(cfg, model.config)
    dist.seed_rank(cfg.seed)  # ranks with a saved RNG state get it back in load_state
    cache = _shared_cache(cfg, data, preprocess, dist)
    features = _shared_features(cfg, model, data, cache, device, dist, say)
    cpu_threads = threads if device.type == "cpu" else None
    precision = precision_name(amp_settings(device, cfg.mixed_precision).dtype)
    plan = plan_resume(saved, cfg, changed, dist.world_size, len(data.triplets()), cpu_threads, precision)
    for warning in plan.warnings:
        say(f"warning: {warning}")
    spec, source = plan.schedule, ckpt.path
    manager = (
        CheckpointManager(cfg.output_dir, RESUME_PREFIX, cfg.keep_last, protected=source) if dist.is_main else None
    )
    trainer = Trainer(cfg, model, data, cache, device, manager, spec, say, dist, features)
    trainer.load_state(ckpt, plan.keep_schedule, plan.samples_in_epoch)
    protocol_change = trainer.adopt_protocol()
    if protocol_change:
        say(protocol_change)
    p = trainer.progress
    where = f"epoch {p.epoch} complete" + (
        f", {p.samples_in_epoch} samples into epoch {p.epoch + 1}" if p.samples_in_epoch else ""
    )
    best = f"{100 * p.best_recall:.2f}%" if p.best_recall >= 0 else "none yet"
    say(
        f"resuming from {source} ({where}, step {p.global_step}); previous best R@10 {best}; "
        f"LR {current_lr(trainer.optimizer):.3g}, beta1 {current_beta1(trainer.optimizer):.3g}; {plan.policy}"
    )
    log = RunLog(cfg.output_dir, dist.is_main)
    log.event(
        "resume",
        checkpoint=str(source),
        epoch=p.epoch,
        samples_in_epoch=p.samples_in_epoch,
        global_step=p.global_step,
        best_recall=p.best_recall,
        lr=current_lr(trainer.optimizer),
        beta1=current_beta1(trainer.optimizer),
        schedule=spec,
        changed=changed,
        config=cfg.to_dict(),
    )
    try:
        return _run(trainer, log, say)
    finally:
        dist.close()
