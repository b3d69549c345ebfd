"""The training loop. A `Trainer` owns the model, optimizer, schedule, grad scaler and progress counters;
its `state_dict()` is everything a bit-exact resume needs, and the checkpoint manager writes it.

Stepping: an optimizer step covers `--gradient-accumulation` micro-batches. fashionrec's presets also step
the partial group an epoch may end with; the `original` preset steps on full groups only and keeps the
leftover micro-batches' gradients for the next epoch's first step, as the original system's loop does. Such
a pending gradient is saved in the epoch-end checkpoint, so a resumed run stays bit-identical."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import TripletDataset
from fashionrec.data.features import CachedFeatures
from fashionrec.errors import UserError
from fashionrec.eval.original_protocol import FAST_BATCHES, evaluate_original
from fashionrec.eval.retrieval import STANDARD, EvalSettings, evaluate
from fashionrec.model import checkpoint_format
from fashionrec.model.checkpoint_format import Checkpoint, Progress, non_finite_tensors
from fashionrec.model.factory import FashionModel
from fashionrec.model.original_format import ORIGINAL_PROTOCOL
from fashionrec.train import distributed
from fashionrec.train.accumulate import StepOutOfMemory, StepParts, StepSnapshot, fallback_message, step_gradients
from fashionrec.train.checkpoint import CheckpointManager
from fashionrec.train.data import ResumableSampler, TrainingData, make_loader
from fashionrec.train.optim import build_optimizer, freeze, frozen_parts, load_optimizer_state
from fashionrec.train.params import TrainConfig
from fashionrec.train.schedule import build_scheduler, current_lr, full_groups_only


class TrainingStopped(Exception):
    """Raised after a requested stop (SIGTERM, SIGINT) once the state is safely checkpointed."""


class Diverged(UserError):
    """The loss or the weights became NaN or infinite: the run stops and saves nothing new."""


# `--validation` -> the protocol name recorded for each `val_recalls` entry.
PROTOCOLS = {"standard": STANDARD, "original": ORIGINAL_PROTOCOL}


class Precision(NamedTuple):
    """What `--mixed-precision` means on a device: the autocast dtype (None: fp32), whether fp16 needs a grad
    scaler, and the one line to say when the device cannot do what the flag asks for well."""

    dtype: torch.dtype | None
    scaler: bool
    note: str | None = None


def precision_name(dtype: torch.dtype | None) -> str:
    """What a run computes in, as checkpoints record it: "fp32", "bf16" or "fp16"."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (x86: AVX512-BF16 or AMX-BF16; Arm: the BF16 extension). Without
    it oneDNN still runs bf16, converting to fp32 and back around every kernel: several times slower than fp32
    (ResNet-50 training on an AVX2 CPU: 9x). Torch releases without `torch.cpu.get_capabilities` cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return False
    found = capabilities()
    return any(found.get(name, False) for name in ("avx512_bf16", "amx_bf16", "bf16"))


def amp_settings(device: torch.device, enabled: bool) -> Precision:
    """bf16 autocast where the device has bf16 arithmetic, fp16 + GradScaler on older CUDA GPUs, and fp32 on a
    CPU without native bf16 (there autocast would only slow training down; a CPU needs no memory saved)."""
    if not enabled:
        return Precision(None, False)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return Precision(torch.float16, True)
    if device.type == "cpu" and not cpu_has_native_bf16():
        note = (
            "--mixed-precision: this CPU has no native bf16 arithmetic (AVX512-BF16, AMX or Arm BF16), where bf16 "
            "autocast trains several times slower than fp32: training in fp32"
        )
        return Precision(None, False, note)
    return Precision(torch.bfloat16, False)


def rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    size = len(batch["index"])
    chunks = [
        dict(zip(batch, values, strict=True))
        for values in zip(*(v.tensor_split(parts) for v in batch.values()), strict=True)
    ]
    return [c for c in chunks if len(c["index"])] if size else []


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        model: FashionModel,
        data: TrainingData,
        cache: ImageCache,
        device: torch.device,
        manager: CheckpointManager | None,
        schedule: dict[str, Any],
        log: Callable[[str], None] = print,
        dist: distributed.DistContext | None = None,
        features: CachedFeatures | None = None,
    ):
        """`dist`: this process's place in a torchrun job (None: a single process, nothing wrapped).
        `features`: the frozen parts' outputs, computed once (train/features.py), read in place of running them."""
        dist = dist or distributed.DistContext()
        self.cfg, self.data, self.cache, self.device, self.manager, self.log = cfg, data, cache, device, manager, log
        self.features = features
        self.rank, self.world_size = rank, world_size = dist.rank, dist.world_size
        freeze(model, frozen_parts(model, cfg))  # before DDP records the parameters that train
        self.model = model.to(device)
        # Static shapes: an epoch's last, smaller batch would otherwise recompile with dynamic-shape kernels
        # that the later full batches run too, while a run resumed mid-epoch in a new process runs the static
        # ones, and the bits would differ. One kernel per shape keeps a resume exact.
        self.train_model = torch.compile(self.model, dynamic=False) if cfg.compile else self.model
        wrap = dist.wrap(device)
        if wrap is not None:
            self.train_model = wrap(self.train_model)
        self.loss_fn = dist.loss_fn(self.model, cfg.global_negatives) or self.model.loss
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = schedule
        self.scheduler = build_scheduler(self.optimizer, schedule)
        precision = amp_settings(device, cfg.mixed_precision)
        if precision.note:
            log(f"note: {precision.note}")
        self.amp_dtype = precision.dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
        self.full_groups_only = full_groups_only(cfg.preset)
        self.protocol = PROTOCOLS[cfg.validation]
        self.progress = Progress()
        self.dataset = TripletDataset(
            data.triplets(), cache, model.tokenizer, train=True, seed=cfg.seed, features=features
        )
        self.sampler = ResumableSampler(self.dataset, cfg.seed, rank, world_size)
        self.last_checkpoint = None
        self.stop_requested = False

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self, rng_per_rank: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """`rng_per_rank`: every rank's RNG state, gathered by `_save`; a single process passes none."""
        return checkpoint_format.training_state(
            model=self.model,
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            scaler_state=self.scaler.state_dict(),
            progress=self.progress,
            rng_per_rank=rng_per_rank or [rng_state()],
            schedule=self.schedule,
            world_size=self.world_size,
            seed=self.cfg.seed,
            train_config=self.cfg.to_dict(),
            threads=torch.get_num_threads(),
            precision=precision_name(self.amp_dtype),
            pending_gradients=self.pending_gradients(),
        )

    def pending_gradients(self) -> dict[str, torch.Tensor]:
        """Gradients accumulated but not stepped yet: only after an epoch whose leftover micro-batches wait for
        the next epoch's first step (the original system's rule); empty everywhere else."""
        return {name: p.grad.detach() for name, p in self.model.named_parameters() if p.grad is not None}

    def load_state(self, ckpt: Checkpoint, keep_schedule: bool, samples_in_epoch: int) -> None:
        """Restore optimizer, schedule position, scaler, counters and RNG. With `keep_schedule` False the
        caller has already built a new schedule (see schedule.py) and only the optimizer moments load.
        `samples_in_epoch`: this rank's position in the epoch in progress (re-scaled for another world size)."""
        if ckpt.optimizer_state:
            load_optimizer_state(self.optimizer, ckpt.optimizer_state)
        if keep_schedule:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
        else:  # the new schedule's first LR applies from the next step on
            self.scheduler = build_scheduler(self.optimizer, self.schedule)
        if ckpt.scaler_state:
            self.scaler.load_state_dict(ckpt.scaler_state)
        self._load_pending_gradients(ckpt.pending_gradients, str(ckpt.path))
        self.progress = ckpt.progress()
        self.progress.samples_in_epoch = samples_in_epoch
        p = self.progress  # checkpoints from before protocols were recorded measured with the standard one
        p.val_protocols = [STANDARD] * (len(p.val_recalls) - len(p.val_protocols)) + p.val_protocols
        if p.best_protocol is None and p.best_recall >= 0 and p.val_protocols:
            p.best_protocol = p.val_protocols[-1]
        # Each rank continues its own stream; a rank the checkpoint has no state for keeps its fresh seed.
        per_rank = ckpt.rng_per_rank
        rng = per_rank[self.rank] if self.rank < len(per_rank) else None
        if rng:
            torch.set_rng_state(rng["torch"])
            if torch.cuda.is_available() and len(rng.get("cuda", [])) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def _load_pending_gradients(self, pending: dict[str, torch.Tensor], source: str) -> None:
        params = dict(self.model.named_parameters())
        unknown = sorted(set(pending) - set(params))
        if unknown:
            raise UserError(f"{source}: pending gradients for parameters this model does not have: {unknown[:5]}")
        for name, grad in pending.items():
            params[name].grad = grad.to(params[name].device, params[name].dtype)

    def adopt_protocol(self) -> str | None:
        """A resumed run that validates with another protocol than its best was measured with starts its best
        anew (the numbers do not compare); returns the line that says so, or None."""
        p = self.progress
        if p.best_protocol is None or p.best_protocol == self.protocol:
            return None
        line = (
            f"validation protocol changes from {p.best_protocol} to {self.protocol} (--validation "
            f"{self.cfg.validation}): their recalls do not compare, so the best model is chosen anew from here"
        )
        p.best_recall, p.best_protocol = -1.0, None
        return line

    # ---- one optimizer step ------------------------------------------------------------------------
    def step_parts(self) -> StepParts:
        return StepParts(
            self.train_model,
            self.loss_fn,
            self.scaler,
            self.device,
            self.amp_dtype,
            loss_is_collective=self.cfg.global_negatives and self.world_size > 1,
        )

    def _accumulate(self, group: list[dict[str, torch.Tensor]], snapshot: StepSnapshot, apply: bool) -> list[float]:
        chunks = [c for batch in group for c in split_batch(batch, self.progress.micro_splits)]
        # Leftover micro-batches weigh what they would in a full group (the original system's loss / ga).
        divisor = len(chunks) * self.cfg.gradient_accumulation / len(group) if self.full_groups_only else None
        losses = step_gradients(self.step_parts(), chunks, snapshot, self.cfg.accumulate_negatives, divisor)
        if apply:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return distributed.mean_over_ranks(torch.stack(losses)).tolist()

    def step(self, group: list[dict[str, torch.Tensor]]) -> list[float]:
        """One optimizer step over an accumulation group. When any rank runs out of memory, every rank
        halves the micro-batch and doubles accumulation (the same samples per step), says what that changes,
        and retries the group from its starting RNG state, buffers and gradients (see accumulate.py)."""
        return self._run_group(group, apply=True)

    def carry(self, group: list[dict[str, torch.Tensor]]) -> list[float]:
        """An epoch's leftover micro-batches under the original system's rule: their gradients are kept for
        the next epoch's first step (and saved with the epoch's checkpoint)."""
        return self._run_group(group, apply=False)

    def _run_group(self, group: list[dict[str, torch.Tensor]], apply: bool) -> list[float]:
        snapshot = StepSnapshot.take(self.model, self.device)
        while True:
            try:
                return self._accumulate(group, snapshot, apply)
            except StepOutOfMemory as error:
                ranks = error.ranks  # handled below, once the failed attempt's tensors are released
            self._fall_back(group, snapshot, ranks)

    def _fall_back(self, group: list[dict[str, torch.Tensor]], snapshot: StepSnapshot, ranks: list[int]) -> None:
        micro = math.ceil(max(len(b["index"]) for b in group) / self.progress.micro_splits)
        self.optimizer.zero_grad(set_to_none=True)
        snapshot.restore()
        if micro <= 1:
            raise UserError("out of memory with a micro-batch of one sample: the model does not fit on this device")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.progress.micro_splits *= 2
        self.log(
            fallback_message(
                micro,
                self.progress.micro_splits,
                ranks,
                self.world_size,
                cached=self.cfg.accumulate_negatives,
                step_targets=sum(len(b["index"]) for b in group),
                gathered=self.cfg.global_negatives,
            )
        )

    # ---- epochs ------------------------------------------------------------------------------------
    def _request_stop(self, signum: int, _frame: Any) -> None:
        self.log(f"received signal {signum}: saving a checkpoint after the current step, then stopping")
        self.stop_requested = True

    def train_epoch(self) -> None:
        p, cfg = self.progress, self.cfg
        self.dataset.set_epoch(p.epoch)
        self.sampler.set_position(p.epoch, p.samples_in_epoch)
        batches = iter(make_loader(self.dataset, self.sampler, cfg, p.epoch))
        self.model.train()
        bar = tqdm(
            total=math.ceil(len(self.sampler) / cfg.batch),
            desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
            disable=self.rank != 0,
            leave=False,
            dynamic_ncols=True,
        )
        start, seen = time.perf_counter(), 0
        while group := list(islice(batches, cfg.gradient_accumulation)):
            # The original system's rule: an epoch's leftover micro-batches wait for the next epoch's first step.
            carried = self.full_groups_only and len(group) < cfg.gradient_accumulation
            losses = self.carry(group) if carried else self.step(group)
            if not all(math.isfinite(x) for x in losses) and not self.scaler.is_enabled():
                bar.close()
                raise Diverged(
                    f"the loss became {losses[-1]} in epoch {p.epoch + 1} at step {p.step_in_epoch + 1}: stopping "
                    f"without saving (last checkpoint: {self.last_checkpoint or 'none'}); try a lower --lr"
                )
            n = sum(len(b["index"]) for b in group)
            p.samples_in_epoch += n
            stepped = 0 if carried else 1
            p.step_in_epoch += stepped
            p.global_step += stepped
            p.epoch_loss_sum += sum(losses)
            p.epoch_loss_count += len(losses)
            seen += n * self.world_size
            bar.update(len(group))
            bar.set_postfix(
                loss=f"{losses[-1]:.4f}",
                lr=f"{current_lr(self.optimizer):.2e}",
                samples_s=f"{seen / (time.perf_counter() - start):.1f}",
            )
            if carried:  # the epoch is over; a stop request is honoured after the next step
                break
            epoch_done = p.samples_in_epoch >= self.sampler.num_samples
            stop = distributed.any_rank(self.stop_requested)  # every rank stops after the same step
            if stop or (cfg.save_every_steps and p.global_step % cfg.save_every_steps == 0 and not epoch_done):
                self.save_step()
            if stop:
                bar.close()
                raise TrainingStopped(f"stopped in epoch {p.epoch + 1} after step {p.step_in_epoch}")
        bar.close()

    def validate(self, full: bool = False) -> dict[str, Any]:
        """Recall on the validation split with the run's protocol: with --fast-validation a seeded subset of
        queries (standard) or the first batches (original), unless `full`."""
        cfg = self.cfg
        fast = cfg.fast_validation and not full
        settings = EvalSettings(
            device=self.device,
            batch_size=cfg.batch,
            num_workers=cfg.num_workers,
            amp_dtype=self.amp_dtype,
            query_limit=cfg.fast_validation_queries if fast else None,
            seed=cfg.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        if self.protocol == ORIGINAL_PROTOCOL:
            limit = FAST_BATCHES if fast else None
            return evaluate_original(self.model, self.data.val_splits, self.cache, settings, limit, self.features)
        return evaluate(self.model, self.data.val_splits, self.cache, settings, self.features)

    def end_epoch(self, metrics: dict[str, Any]) -> None:
        p = self.progress
        p.train_losses.append(p.epoch_loss_sum / max(p.epoch_loss_count, 1))
        p.val_recalls.append(metrics["average"]["recall_at_10"])
        p.val_recalls_at_50.append(metrics["average"]["recall_at_50"])
        p.val_protocols.append(metrics["protocol"])
        p.epoch += 1
        p.samples_in_epoch = p.step_in_epoch = p.epoch_loss_count = 0
        p.epoch_loss_sum = 0.0

    def _save(self, write: Callable[[CheckpointManager, dict[str, Any]], Path]) -> None:
        """Collective: every rank's RNG state goes into the checkpoint rank 0 writes, and the other ranks
        wait for the write to finish."""
        rngs = distributed.gather_objects(rng_state())
        if self.manager is not None:
            self.last_checkpoint = write(self.manager, self.state_dict(rngs))
        distributed.wait_for_rank0()

    def _check_finite_weights(self) -> None:
        """Never save a diverged model (with fp16 the grad scaler skips inf steps, so the loss alone can't tell)."""
        bad = non_finite_tensors(self.model.state_dict())
        if bad:
            raise Diverged(
                f"weights became NaN or infinite in epoch {self.progress.epoch} ({bad[0]}, +{len(bad) - 1} more): "
                f"stopping without saving (last checkpoint: {self.last_checkpoint or 'none'}); try a lower --lr"
            )

    def _save_final(self) -> None:
        """The final file's recall is the full validation set's, so it equals what `evaluate` prints for it:
        a link to the last epoch's file when that was already measured on all queries, else its own file."""
        p = self.progress
        if not p.val_recalls:  # the same on every rank: nothing was trained
            return
        if not self.cfg.fast_validation:
            if self.manager is not None:
                self.manager.save_final(self.last_checkpoint, p.epoch, p.val_recalls[-1])
            return
        full = self.validate(full=True)["average"]
        self.log(f"full validation of the final model: R@10 {100 * full['recall_at_10']:.2f}%")

        def write(manager: CheckpointManager, state: dict[str, Any]) -> Path:
            state = {**state, "recall_at_10": full["recall_at_10"], "recall_at_50": full["recall_at_50"]}
            return manager.save_final_state(state, p.epoch, full["recall_at_10"])

        self._save(write)

    def best_file_tag(self) -> str:
        """Best files of the standard protocol keep their plain names; others are named by their protocol, so
        a best of one protocol never replaces a best of another."""
        return "" if self.protocol == STANDARD else self.protocol

    def save_step(self) -> None:
        p = self.progress
        self._save(partial(CheckpointManager.save_step, epoch_in_progress=p.epoch + 1, step=p.step_in_epoch))

    def fit(self, on_epoch: Callable[[Trainer, dict], None] | None = None) -> None:
        """Train until `cfg.epochs` are complete (or `stop_after_epochs`), checkpointing each epoch."""
        cfg, p = self.cfg, self.progress
        # Every rank: torchrun passes a SIGTERM on to all of them, and all take part in the last save.
        handlers = (
            {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)} if _main_thread() else {}
        )
        try:
            while p.epoch < cfg.epochs:
                if cfg.stop_after_epochs is not None and p.epoch >= cfg.stop_after_epochs:
                    self.log(f"stopping after {p.epoch} epochs as asked (--stop-after-epochs); resume to continue")
                    return
                epoch_start = time.perf_counter()
                self.train_epoch()
                metrics = self.validate()
                self.end_epoch(metrics)
                self._check_finite_weights()
                recall = p.val_recalls[-1]
                is_best = recall > p.best_recall  # of this protocol: adopt_protocol resets it on a change
                if is_best:
                    p.best_recall, p.best_protocol = recall, self.protocol
                self._save(partial(CheckpointManager.save_epoch, epoch=p.epoch, recall=recall))
                if self.manager is not None and is_best:
                    self.manager.save_best(self.last_checkpoint, recall, self.best_file_tag())
                if on_epoch is not None:
                    on_epoch(self, {"metrics": metrics, "epoch_time_s": time.perf_counter() - epoch_start})
            self._save_final()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
