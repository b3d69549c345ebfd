"""torchrun / DistributedDataParallel support. Without torchrun's environment this is a single process:
rank 0 of 1, no process group, nothing wrapped."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fashionrec.model.fashionvlp import FashionVLP


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
        return print if self.is_main else (lambda *a, **k: None)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def wrap(self, device: torch.device) -> Callable[[torch.nn.Module], torch.nn.Module] | None:
        if not self.enabled:
            return None
        ids = [device.index] if device.type == "cuda" else None
        return lambda module: DistributedDataParallel(module, device_ids=ids)

    def loss_fn(self, model: FashionVLP, global_negatives: bool) -> Callable | None:
        """With global negatives, each query is contrasted with the targets of every rank; gradients flow
        back to this rank's own targets only (all_gather output is a constant elsewhere)."""
        if not (self.enabled and global_negatives):
            return None

        def loss(f_ref: torch.Tensor, f_tar: torch.Tensor) -> torch.Tensor:
            gathered = [torch.zeros_like(f_tar) for _ in range(self.world_size)]
            dist.all_gather(gathered, f_tar.detach().contiguous())
            gathered[self.rank] = f_tar
            # Ranks may hold different batch sizes at the end of an epoch: all_gather needs equal shapes,
            # which DistributedSampler's padding guarantees (every rank gets the same number of samples).
            return model.loss(f_ref, torch.cat(gathered), target_offset=self.rank * f_tar.shape[0])

        return loss

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup(device_name: str) -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)
