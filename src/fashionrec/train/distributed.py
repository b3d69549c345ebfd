"""torchrun / DistributedDataParallel support. Without torchrun's environment this is a single process:
rank 0 of 1, no process group, nothing wrapped, and every helper here is a no-op.

Two timeouts: collectives where every rank does the same work (training steps, validation) fail after
`FASHIONREC_DIST_TIMEOUT_S` seconds, so a hung rank ends the job instead of blocking it forever; waits for
rank 0's own slow work (building the cache, writing a checkpoint) use a separate gloo group with a long
timeout (`FASHIONREC_DIST_WAIT_TIMEOUT_S`, default 24 hours), so a big first preprocessing run does not
trip the short one, and a rank 0 stuck for good still ends the job in the end."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fashionrec.errors import UserError
from fashionrec.model.factory import FashionModel, rebuild_model

TIMEOUT_ENV = "FASHIONREC_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300
WAIT_TIMEOUT_ENV = "FASHIONREC_DIST_WAIT_TIMEOUT_S"
DEFAULT_WAIT_TIMEOUT_S = 24 * 3600
T = TypeVar("T")

# The long-timeout group of `wait_for_rank0`; set by `setup`, cleared by `DistContext.close`.
_patient_group: dist.ProcessGroup | None = None


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over ranks: the loss a run reports is the global batch's, not rank 0's shard's."""
    if not active():
        return values
    total = values.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a stop signal that reached only some ranks)."""
    return bool(flagged_ranks(flag))


def flagged_ranks(flag: bool) -> list[int]:
    """The ranks whose `flag` is true, the same list on every rank (one small all_reduce): every rank learns
    that some rank ran out of memory, and which, before any of them starts another collective."""
    if not active():
        return [0] if flag else []
    on_gpu = dist.get_backend() == "nccl"
    flags = torch.zeros(
        dist.get_world_size(), device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else None
    )
    flags[dist.get_rank()] = float(flag)
    dist.all_reduce(flags)
    return [rank for rank, value in enumerate(flags.tolist()) if value]


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order: each rank's RNG state goes into the checkpoint rank 0 writes."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wait_for_rank0() -> None:
    """Barrier with a long timeout: the other ranks wait while rank 0 builds the cache or writes a
    checkpoint, so none reads a half-built cache or exits (and tears the job down) mid-write."""
    if _patient_group is not None:
        dist.barrier(group=_patient_group)


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's rows: this rank's targets are
    negatives in every rank's loss, and all of those terms must reach them for the DDP gradient to equal
    single-process training on the global batch."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        ctx.rows = local.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        start = dist.get_rank() * ctx.rows
        return total[start : start + ctx.rows]


def gather_with_gradient(local: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `local`, concatenated in rank order; gradients flow back to this rank's rows."""
    return _GatherWithGradient.apply(local)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # set under torchrun; None lets the caller pick

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def printer(self) -> Callable[..., None]:
        """print on rank 0, silence elsewhere: logs, plots and checkpoints are rank 0's job."""
        return functools.partial(print, flush=True) if self.is_main else (lambda *a, **k: None)

    def barrier(self) -> None:
        """Wait for rank 0's slow work (see `wait_for_rank0`)."""
        wait_for_rank0()

    def from_rank0(self, value: T) -> T:
        """Rank 0's `value` on every rank (plain data; waits for rank 0 with the long timeout)."""
        if not self.enabled:
            return value
        payload = [value]
        dist.broadcast_object_list(payload, src=0, group=_patient_group)
        return payload[0]

    def seed_rank(self, seed: int) -> None:
        """After the (shared) model initialisation, give each rank its own reproducible RNG stream, so
        dropout masks differ across ranks. A single process keeps the stream it has."""
        if self.enabled:
            torch.manual_seed(seed + 1_000_003 * (self.rank + 1))

    def model_from_rank0(self, model: FashionModel) -> FashionModel:
        """Every rank takes rank 0's config and tokenizer, so a vocabulary built on each rank can never
        differ from rank 0's (other captions or library versions on another node): rank r would then feed
        token ids that mean other words to rank 0's embeddings. The weights follow when DDP wraps it."""
        if not self.enabled:
            return model
        payload = [model.config.to_dict(), model.tokenizer.to_json()]
        dist.broadcast_object_list(payload, src=0)
        if self.is_main:
            return model
        return rebuild_model(payload[0], payload[1])

    def wrap(self, device: torch.device) -> Callable[[torch.nn.Module], torch.nn.Module] | None:
        if not self.enabled:
            return None
        ids = [device.index] if device.type == "cuda" else None
        return lambda module: DistributedDataParallel(module, device_ids=ids)

    def loss_fn(self, model: FashionModel, global_negatives: bool) -> Callable | None:
        """With global negatives, each query is contrasted with the targets of every rank. Every rank must
        hold the same batch size, which DistributedSampler's padding guarantees (equal samples per rank)."""
        if not (self.enabled and global_negatives):
            return None

        def loss(f_ref: torch.Tensor, f_tar: torch.Tensor) -> torch.Tensor:
            return model.loss(f_ref, gather_with_gradient(f_tar), target_offset=self.rank * f_tar.shape[0])

        return loss

    def close(self) -> None:
        global _patient_group
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
        _patient_group = None


def env_timeout(name: str, default_s: int) -> timedelta:
    """A timeout in seconds from the environment variable `name`."""
    text = os.environ.get(name, str(default_s))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise UserError(f"{name}={text!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def setup(device_name: str) -> DistContext:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    global _patient_group
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", timeout=env_timeout(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
        )
    if _patient_group is None:
        _patient_group = dist.new_group(backend="gloo", timeout=env_timeout(WAIT_TIMEOUT_ENV, DEFAULT_WAIT_TIMEOUT_S))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)
