"""Training-loop overhead on the CPU (tiny preset): samples/s of the real loop over samples/s of the model.

    venv/bin/python benchmarks/bench_train.py [--threads 1] [--batch 32] [--steps 10] [--rounds 6] [--workers 0,2]

- loop (num_workers=N): `Trainer.train_epoch` as `fashionrec train` runs it (DataLoader over the
  preprocessing cache of the demo data, tokenisation, caption shuffling, progress bar, schedule step), for
  --steps optimizer steps. Each window starts a fresh DataLoader, as each epoch does, so loader start-up
  (and worker start-up) is paid once per --steps steps: more often than in a real epoch, so the overhead
  shown is an upper bound.
- data nw=0: the same DataLoader alone (num_workers=0, fresh per window), no model: what loading costs
  the main process; 1 / (1 + model rate / data rate) is the loop / model ratio it predicts.
- model: forward, loss, backward, AdamW step and zero_grad on one batch already in memory, same batch size,
  same kind of model and optimizer: what the loop would reach with free data loading and bookkeeping.

Variants alternate within each round (the machine is shared); the report gives medians, the ratio of the
medians and the median of per-round ratios (loop / model, aim >= 0.9), twice: by wall clock, and per
CPU-second of this process plus its DataLoader workers, which other processes' load hardly moves (with
--threads 1; with 2 threads, time spinning in OpenMP waits counts as CPU time).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import torch
from common import (
    DEFAULT_WORKDIR,
    add_threads_argument,
    alternate,
    apply_threads,
    cpu_seconds,
    demo_data,
    header,
    load_average,
    median,
    paired_ratios,
    spread,
    tiny_config,
)

from fashionrec.data.cache import ImageCache
from fashionrec.model import create_model
from fashionrec.train.data import TrainingData, build_cache, load_training_data, make_loader
from fashionrec.train.params import TrainConfig
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer

CPU = torch.device("cpu")
RAW = argparse.RawDescriptionHelpFormatter


def make_trainer(cfg: TrainConfig, data: TrainingData, cache: ImageCache, seed: int) -> Trainer:
    torch.manual_seed(seed)
    model = create_model("tiny", data.train_texts(), pretrained=False)
    # A schedule far longer than the benchmark, so OneCycleLR never runs out of steps.
    return Trainer(cfg, model, data, cache, CPU, None, onecycle_spec(cfg.lr, 10**7), log=lambda _: None)


def loop_window(trainer: Trainer, steps: int) -> int:
    """`steps` optimizer steps of the real `train_epoch`; returns the samples. The sampler's resume position is
    set so that exactly `steps` full accumulation groups remain in the epoch; then the epoch is closed
    the way `end_epoch` does, so the next window sees a new epoch's data order."""
    p, cfg = trainer.progress, trainer.cfg
    per_step = cfg.batch * cfg.gradient_accumulation
    p.samples_in_epoch = trainer.sampler.num_samples - steps * per_step
    p.step_in_epoch = 0
    before = p.global_step
    trainer.train_epoch()
    assert p.global_step - before == steps, (p.global_step - before, steps)
    p.epoch += 1
    p.samples_in_epoch = p.step_in_epoch = p.epoch_loss_count = 0
    p.epoch_loss_sum = 0.0
    return steps * per_step


def model_window(trainer: Trainer, batch: dict[str, torch.Tensor], steps: int) -> int:
    """Forward + loss + backward + optimizer step on an in-memory batch, `steps` times; returns the samples."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    accumulation = trainer.cfg.gradient_accumulation
    for _ in range(steps):
        for _ in range(accumulation):
            f_ref, f_tar = model(batch)
            (model.loss(f_ref, f_tar) / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * accumulation * len(batch["index"])


def data_window(trainer: Trainer, steps: int, epoch: list[int]) -> int:
    """The loop's data alone: a fresh DataLoader (the trainer's num_workers) over the same dataset and
    sampler, `steps` batches, no model; returns the samples. Each call takes a new epoch's order."""
    cfg = trainer.cfg
    epoch[0] += 1
    trainer.dataset.set_epoch(epoch[0])
    trainer.sampler.set_position(epoch[0], trainer.sampler.num_samples - steps * cfg.batch)
    return sum(len(b["index"]) for b in make_loader(trainer.dataset, trainer.sampler, cfg, epoch[0]))


def first_batch_seconds(trainer: Trainer, repeats: int = 3) -> float:
    """Median time from creating the epoch's DataLoader to holding its first batch."""
    times = []
    for _ in range(repeats):
        trainer.sampler.set_position(0, 0)
        start = time.perf_counter()
        next(iter(make_loader(trainer.dataset, trainer.sampler, trainer.cfg, 0)))
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--images", type=int, default=600, help="demo images (600: 1350 training triplets)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timed window")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--workers", default="0,2", help="comma-separated num_workers values for the loop")
    add_threads_argument(parser)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    apply_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    header("bench_train: training-loop samples/s over model-only samples/s (tiny preset, CPU)")
    root = demo_data(args.workdir, args.images)
    base = tiny_config(
        root,
        args.workdir,
        batch=args.batch,
        gradient_accumulation=args.gradient_accumulation,
        epochs=10**6,
        num_workers=0,
    )
    data = load_training_data(base, log=lambda _: None)
    torch.manual_seed(0)
    preprocess = create_model("tiny", data.train_texts(), pretrained=False).config.preprocess_config()
    cache = build_cache(base, data, preprocess)
    steps_per_epoch = math.ceil(len(data.triplets()) / (args.batch * args.gradient_accumulation))
    if args.steps > steps_per_epoch:
        parser.error(f"--steps {args.steps} is more than the {steps_per_epoch} steps of an epoch")

    trainers = {f"loop nw={w}": make_trainer(dataclasses.replace(base, num_workers=w), data, cache, 0) for w in workers}
    model_trainer = make_trainer(base, data, cache, 0)
    batch = next(iter(make_loader(model_trainer.dataset, model_trainer.sampler, base, 0)))
    print(
        f"data: {len(data.triplets())} training triplets ({args.images} demo images), batch {args.batch} x "
        f"{args.gradient_accumulation} accumulation, {steps_per_epoch} steps per epoch; "
        f"window {args.steps} steps; "
        f"{args.rounds} rounds after {args.warmup_steps} warm-up steps each"
    )

    for trainer in trainers.values():  # warm-up: first-call allocations, worker code paths
        loop_window(trainer, args.warmup_steps)
    model_window(model_trainer, batch, args.warmup_steps)

    epoch = [10**6]  # the data-only windows' own epoch counter
    windows = {
        "model": lambda: model_window(model_trainer, batch, args.steps),
        "data nw=0": lambda: data_window(model_trainer, args.steps * args.gradient_accumulation, epoch),
    }
    windows.update({name: (lambda t=t: loop_window(t, args.steps)) for name, t in trainers.items()})
    per_cpu_second: dict[str, list[float]] = {name: [] for name in windows}

    def measured(name: str):
        def run() -> float:
            wall, cpu = time.perf_counter(), cpu_seconds()
            samples = windows[name]()
            per_cpu_second[name].append(samples / (cpu_seconds() - cpu))
            return samples / (time.perf_counter() - wall)

        return run

    results = alternate({name: measured(name) for name in windows}, args.rounds)

    for title, table in (
        ("samples/s (wall clock)", results),
        ("samples per CPU-second (this process + its reaped DataLoader workers)", per_cpu_second),
    ):
        print(f"\n{title}, median (min..max, n):")
        for name, values in table.items():
            print(f"  {name:<12} {spread(values)}")
        for name in trainers:
            ratios = paired_ratios(table[name], table["model"])
            print(
                f"  {name} / model: ratio of medians {median(table[name]) / median(table['model']):.3f}; "
                f"per-round ratios {spread(ratios)}"
            )
        loading, compute = table["data nw=0"], table["model"]
        predicted = [1 / (1 + c / d) for c, d in zip(compute, loading, strict=True)]
        print(
            f"  predicted for num_workers=0 (loading not overlapped with compute): 1 / (1 + model / data) "
            f"per round {spread(predicted)}"
        )
    print("\nDataLoader creation to first batch (paid once per epoch; median of 3):")
    for name, trainer in trainers.items():
        print(f"  {name:<12} {1000 * first_batch_seconds(trainer):.0f} ms")
    print(f"\nfinished; load average now {load_average()}")


if __name__ == "__main__":
    main()
