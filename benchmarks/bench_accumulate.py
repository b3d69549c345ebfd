"""The cost of --accumulate-negatives on the CPU (tiny preset): samples/s and peak memory of an optimizer
step over N micro-batches, plain accumulation against feature-cached accumulation, and one batch of the
whole step (the objective cached accumulation reproduces, at N times the activation memory).

    venv/bin/python benchmarks/bench_accumulate.py --threads 1 [--micro-batch 16] [--accumulation 4]

- plain: `Trainer.step` with N micro-batches, each its own InfoNCE (forward + backward once each).
- cached: the same with `accumulate_negatives` (a no-gradient forward of every micro-batch, the loss over
  the step, then forward + backward of each micro-batch again): the InfoNCE over all N x micro samples.
- whole batch: `Trainer.step` with one micro-batch of N x micro samples (what `cached` computes).

The step's group is loaded once and kept in memory, so data loading is not measured. Speed: variants
alternate within each round (the machine is shared); medians, ratio of medians and median of per-round
ratios, by wall clock and per CPU-second of this process. Memory: each variant runs in its own fresh
process (--memory-runs times): the peak resident set (VmHWM) over two steps minus the resident set just
before them: activations, gradients, AdamW moments and allocator slack; medians.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    median,
    paired_ratios,
    spread,
    tiny_config,
)

from fashionrec.model import create_model
from fashionrec.train.data import build_cache, load_training_data, make_loader
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer

RAW = argparse.RawDescriptionHelpFormatter
VARIANTS = ("plain", "cached", "whole batch")


def build(args: argparse.Namespace, variant: str) -> tuple[Trainer, list[dict[str, torch.Tensor]]]:
    """A trainer for `variant` and the step's group of micro-batches (the same samples for every variant)."""
    whole = variant == "whole batch"
    cfg = tiny_config(
        demo_data(args.workdir, args.images),
        args.workdir,
        batch=args.micro_batch * (args.accumulation if whole else 1),
        gradient_accumulation=1 if whole else args.accumulation,
        accumulate_negatives=variant == "cached",
        num_workers=0,
    )
    data = load_training_data(cfg, log=lambda _: None)
    torch.manual_seed(0)
    model = create_model("tiny", data.train_texts(), pretrained=False)
    cache = build_cache(cfg, data, model.config.preprocess_config())
    trainer = Trainer(cfg, model, data, cache, torch.device("cpu"), None, onecycle_spec(cfg.lr, 10**7), lambda _: 0)
    loader = iter(make_loader(trainer.dataset, trainer.sampler, cfg, 0))
    group = [next(loader) for _ in range(cfg.gradient_accumulation)]
    return trainer, group


def window(trainer: Trainer, group: list[dict[str, torch.Tensor]], steps: int, per_cpu_second: list[float]) -> float:
    """samples/s over `steps` optimizer steps on the in-memory group; samples per CPU-second of this process
    (which other processes' load hardly moves, with one thread) go to `per_cpu_second`."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(steps):
        trainer.step(group)
    samples = steps * sum(len(b["index"]) for b in group)
    per_cpu_second.append(samples / (cpu_seconds() - cpu))
    return samples / (time.perf_counter() - wall)


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(args: argparse.Namespace) -> None:
    """In a fresh process: MiB the process grew to during two steps of `args.memory_of`, printed as JSON."""
    trainer, group = build(args, args.memory_of)
    before = resident_kib("VmRSS")
    for _ in range(2):
        trainer.step(group)
    print(json.dumps({"peak_mib": (resident_kib("VmHWM") - before) / 1024}))


def memory_in_fresh_processes(args: argparse.Namespace, variant: str) -> list[float]:
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-of", variant]
    peaks = []
    for _ in range(args.memory_runs):
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        peaks.append(json.loads(out.strip().splitlines()[-1])["peak_mib"])
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--images", type=int, default=600, help="demo images (600: 1350 training triplets)")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--accumulation", type=int, default=4, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per timed window")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--memory-runs", type=int, default=3, help="fresh processes per variant for memory")
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process's job
    add_threads_argument(parser)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    apply_threads(args.threads)
    if args.memory_of:
        measure_memory(args)
        return

    header("bench_accumulate: plain vs feature-cached (--accumulate-negatives) accumulation (tiny preset, CPU)")
    step_samples = args.micro_batch * args.accumulation
    print(
        f"step: {args.accumulation} micro-batches of {args.micro_batch} ({step_samples} samples); "
        f"{args.rounds} rounds of {args.steps}-step windows after 1 warm-up step; memory: "
        f"{args.memory_runs} fresh processes per variant"
    )
    built = {variant: build(args, variant) for variant in VARIANTS}
    per_cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for trainer, group in built.values():
        window(trainer, group, 1, [])
    speed = alternate(
        {v: (lambda t=t, g=g, c=per_cpu[v]: window(t, g, args.steps, c)) for v, (t, g) in built.items()}, args.rounds
    )
    del built
    memory = {variant: memory_in_fresh_processes(args, variant) for variant in VARIANTS}

    negatives = {"plain": args.micro_batch - 1, "cached": step_samples - 1, "whole batch": step_samples - 1}
    print("\n| variant | negatives | samples/s, median (min..max, n) | vs plain | peak MiB (min..max) | vs plain |")
    print("|---|---:|---|---:|---:|---:|")
    for variant in VARIANTS:
        print(
            f"| {variant} | {negatives[variant]} | {spread(speed[variant])} | "
            f"{median(speed[variant]) / median(speed['plain']):.2f}x | {median(memory[variant]):.0f} "
            f"({min(memory[variant]):.0f}..{max(memory[variant]):.0f}) | "
            f"{median(memory[variant]) / median(memory['plain']):.2f}x |"
        )
    print("\nsamples per CPU-second, median (min..max, n):")
    for variant in VARIANTS:
        print(f"  {variant:<12} {spread(per_cpu[variant])}")
    for title, table in (("samples/s", speed), ("samples per CPU-second", per_cpu)):
        ratios = paired_ratios(table["cached"], table["plain"])
        print(f"cached / plain {title}: per-round ratios {spread(ratios)}")


if __name__ == "__main__":
    main()
