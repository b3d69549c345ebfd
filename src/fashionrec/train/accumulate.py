"""The gradients of one optimizer step over its micro-batches, and out-of-memory errors that every rank
handles alike.

Two ways to accumulate:
- plain: each micro-batch's InfoNCE contrasts its queries with its own targets only, and the step's
  gradient is the mean of the micro-batches' gradients. Accumulation adds samples, not negatives.
- cached (`--accumulate-negatives`): the InfoNCE of the whole step, each query against every target of
  every micro-batch, with the activation memory of one micro-batch. A first pass embeds every micro-batch
  without gradients; the loss over all cached embeddings gives the gradient with respect to each
  embedding; a second pass re-runs each micro-batch with gradients and back-propagates those embedding
  gradients. The gradient equals that of one batch holding the whole step, for models whose per-sample
  output does not depend on the rest of the batch (tiny: GroupNorm; ResNet-50's BatchNorm does). Each
  micro-batch's second pass replays the random stream of its first (dropout masks match), and the first
  pass leaves the model's buffers (BatchNorm running statistics) as it found them, so they are updated
  once per micro-batch, as in plain accumulation.

Out of memory: after each micro-batch's work, the ranks agree (one small all_reduce) whether any ran out
of memory, before any of them starts another collective; then all raise `StepOutOfMemory` together and
the trainer retries the step with smaller micro-batches from a `StepSnapshot`. Work during which the other
ranks may already be inside a collective (DDP's gradient exchange in the last micro-batch, the
`--global-negatives` gather of plain accumulation) cannot be retried: that rank stops the job with a
`UserError` saying what to change, and torchrun ends the other ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
from torch import nn

from fashionrec.errors import UserError
from fashionrec.train import distributed

T = TypeVar("T")
Batch = dict[str, torch.Tensor]
RngState = tuple[torch.Tensor, torch.Tensor | None]


@dataclass
class StepParts:
    """What computing one step's gradients takes from the trainer."""

    model: nn.Module  # the model as trained: compiled and/or wrapped in DDP
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None
    loss_is_collective: bool = False  # the loss gathers every rank's targets (--global-negatives under DDP)


class StepOutOfMemory(Exception):
    """Raised on every rank together when any rank ran out of memory in the step's work."""

    def __init__(self, ranks: list[int]):
        super().__init__(f"out of memory on rank(s) {', '.join(map(str, ranks))}")
        self.ranks = ranks


def capture_rng(device: torch.device) -> RngState:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_rng(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@dataclass
class StepSnapshot:
    """The RNG streams and model buffers at the start of a step, and the gradients already accumulated when
    there are any (a previous epoch's leftover micro-batches): a retried step starts from here, and the
    first pass of cached accumulation hands the buffers back unchanged."""

    module: nn.Module
    device: torch.device
    rng: RngState
    buffers: list[torch.Tensor]
    grads: list[torch.Tensor | None] | None = None

    @classmethod
    def take(cls, module: nn.Module, device: torch.device) -> StepSnapshot:
        params = list(module.parameters())
        grads = [None if p.grad is None else p.grad.clone() for p in params]
        pending = grads if any(g is not None for g in grads) else None
        return cls(module, device, capture_rng(device), [b.detach().clone() for b in module.buffers()], pending)

    def restore_buffers(self) -> None:
        with torch.no_grad():
            for buffer, saved in zip(self.module.buffers(), self.buffers, strict=True):
                buffer.copy_(saved)

    def restore(self) -> None:
        restore_rng(self.rng, self.device)
        self.restore_buffers()
        if self.grads is not None:
            for param, grad in zip(self.module.parameters(), self.grads, strict=True):
                param.grad = None if grad is None else grad.clone()


def _no_sync(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP exchanges gradients in the backward of the last micro-batch only."""
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()


def _forward(parts: StepParts, chunk: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = {k: v.to(parts.device, non_blocking=True) for k, v in chunk.items()}
    with torch.autocast(parts.device.type, dtype=parts.amp_dtype, enabled=parts.amp_dtype is not None):
        return parts.model(chunk)


def agreed(work: Callable[[], T], collective: bool, size: int) -> T:
    """Run `work`; then every rank learns whether any ran out of memory in it (see the module doc).
    `collective`: other ranks may be inside a collective of this work by now, so a failure stops the job."""
    failed = False
    result: Any = None
    try:
        result = work()
    except torch.cuda.OutOfMemoryError as error:
        if collective and distributed.active():
            raise UserError(
                f"out of memory on rank {torch.distributed.get_rank()} in a micro-batch of {size} while the "
                "ranks exchange data within it (the last micro-batch's gradients, or --global-negatives "
                "without --accumulate-negatives), so the ranks cannot retry together; the job stops. Restart "
                f"or resume with --batch {max(size // 2, 1)}, or with --gradient-accumulation 2 or more and "
                "--accumulate-negatives, which let the ranks fall back together"
            ) from error
        failed = True
    ranks = distributed.flagged_ranks(failed)
    if ranks:
        raise StepOutOfMemory(ranks)
    return result


def _plain_micro_batch(parts: StepParts, chunk: Batch, last: bool, divisor: float) -> torch.Tensor:
    with _no_sync(parts.model, last):
        f_ref, f_tar = _forward(parts, chunk)
        loss = parts.loss_fn(f_ref, f_tar)
        parts.scaler.scale(loss / divisor).backward()
    return loss.detach()


def plain_gradients(parts: StepParts, chunks: list[Batch], divisor: float) -> list[torch.Tensor]:
    """Each micro-batch's own loss, back-propagated at 1/`divisor` weight; returns the micro-batches' losses."""
    losses = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        work = partial(_plain_micro_batch, parts, chunk, last, divisor)
        losses.append(agreed(work, last or parts.loss_is_collective, len(chunk["index"])))
    return losses


def _embed(parts: StepParts, chunk: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        f_ref, f_tar = _forward(parts, chunk)
    return f_ref.float(), f_tar.float()


def _embedding_gradients(
    parts: StepParts, f_ref: torch.Tensor, f_tar: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The step's loss and its (scaled) gradient with respect to every cached embedding."""
    f_ref, f_tar = f_ref.requires_grad_(), f_tar.requires_grad_()
    loss = parts.loss_fn(f_ref, f_tar)
    weighted = loss if weight == 1 else loss * weight
    grad_ref, grad_tar = torch.autograd.grad(parts.scaler.scale(weighted), (f_ref, f_tar))
    return loss.detach(), grad_ref, grad_tar


def _replay_micro_batch(
    parts: StepParts, chunk: Batch, last: bool, grad_ref: torch.Tensor, grad_tar: torch.Tensor
) -> None:
    with _no_sync(parts.model, last):
        f_ref, f_tar = _forward(parts, chunk)
        # A side that does not depend on any trained weight (a frozen encoder's cached target features) has no
        # gradient to pass on.
        pairs = [(f.float(), g) for f, g in ((f_ref, grad_ref), (f_tar, grad_tar)) if f.requires_grad]
        torch.autograd.backward([f for f, _ in pairs], [g for _, g in pairs])


def cached_gradients(
    parts: StepParts, chunks: list[Batch], snapshot: StepSnapshot, weight: float = 1.0
) -> list[torch.Tensor]:
    """The whole step's InfoNCE over cached embeddings (see the module doc), counted `weight` times; returns
    [the step's loss]. `snapshot` holds the buffers at the start of this attempt."""
    embedded, streams = [], []
    for chunk in chunks:
        streams.append(capture_rng(parts.device))
        embedded.append(agreed(partial(_embed, parts, chunk), False, len(chunk["index"])))
    after = capture_rng(parts.device)
    snapshot.restore_buffers()  # the gradient pass updates running statistics, once
    f_ref, f_tar = (torch.cat(column) for column in zip(*embedded, strict=True))
    del embedded
    work = partial(_embedding_gradients, parts, f_ref, f_tar, weight)
    loss, grad_ref, grad_tar = agreed(work, parts.loss_is_collective, len(f_ref))
    sizes = [len(chunk["index"]) for chunk in chunks]
    pieces = zip(chunks, streams, grad_ref.split(sizes), grad_tar.split(sizes), strict=True)
    for i, (chunk, stream, g_ref, g_tar) in enumerate(pieces):
        last = i == len(chunks) - 1
        restore_rng(stream, parts.device)
        agreed(partial(_replay_micro_batch, parts, chunk, last, g_ref, g_tar), last, len(chunk["index"]))
    restore_rng(after, parts.device)
    return [loss]


def step_gradients(
    parts: StepParts, chunks: list[Batch], snapshot: StepSnapshot, cached: bool, divisor: float | None = None
) -> list[torch.Tensor]:
    """Accumulate one step's gradients (scaled by `parts.scaler`) into the parameters' `.grad`. `divisor`:
    the micro-batches of a full step (default: these chunks); each chunk's loss counts 1/divisor, so the
    leftover micro-batches of an epoch weigh what they would in a full group (the original system's rule)."""
    divisor = divisor or len(chunks)
    if cached:
        return cached_gradients(parts, chunks, snapshot, len(chunks) / divisor)
    return plain_gradients(parts, chunks, divisor)


def fallback_message(
    micro: int, splits: int, ranks: list[int], world_size: int, cached: bool, step_targets: int, gathered: bool
) -> str:
    """What the halved micro-batch changes. `step_targets`: this rank's samples in the step; `gathered`:
    every rank's targets are negatives (--global-negatives under DDP)."""
    half = -(-micro // 2)
    where = f" on rank {', '.join(map(str, ranks))}" if world_size > 1 else ""
    head = (
        f"CUDA out of memory at micro-batch {micro}{where}: continuing with micro-batch {half} and {splits}x the "
        "accumulation (the same samples per optimizer step)"
    )
    ranks_factor = world_size if gathered else 1
    if cached:
        return (
            f"{head}; the objective is unchanged: with --accumulate-negatives every query is still contrasted "
            f"with all {step_targets * ranks_factor} targets of the step"
        )
    return (
        f"{head}; the objective changes: each micro-batch's InfoNCE now contrasts a query with "
        f"{half * ranks_factor - 1} negatives instead of {micro * ranks_factor - 1} "
        "(--accumulate-negatives keeps every negative of the step)"
    )
