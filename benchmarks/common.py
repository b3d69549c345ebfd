"""Helpers shared by the benchmark scripts: the machine line every report starts with, alternating timed
rounds (so load from other processes hits every variant alike), medians, and the tiny-preset demo setup.

Benchmarks print figures; they assert nothing about speed."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

# Outside the repository: other people's runs may clear .bench/, and a half-deleted cache fails mid-run.
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "fashionrec-bench"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    """One line: CPU, cores, torch and its threads, GPU if any, and the load right now (1/5/15 min)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {gpu}; python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; load average {load_average()}"
    )


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have been waited for (a finished
    DataLoader's workers, a finished command)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def alternate(
    variants: dict[str, Callable[[], float]], rounds: int, log: Callable[[str], None] = print
) -> dict[str, list[float]]:
    """Run every variant once per round and return each one's measurements (whatever its callable
    returns), in round order. The order is rotated every two rounds and reversed every other round (three
    variants: all six orders in six rounds; two: AB, BA, BA, AB), so slow spells caused by other processes
    are shared out instead of landing on one variant, and no variant always runs right after the same
    other one (whose DataLoader workers may still be shutting down, say)."""
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = (r // 2) % len(names)
        order = names[shift:] + names[:shift]
        if r % 2:
            order.reverse()
        shown = []
        for name in order:
            gc.collect()  # not inside someone's timing
            value = variants[name]()
            results[name].append(value)
            shown.append(f"{name} {value:.3g}")
        log(f"  round {r + 1}/{rounds} (load {load_average()}): " + ", ".join(shown))
    return results


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios: each pair ran back to back, so the load was about the same for both."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def spread(values: Sequence[float]) -> str:
    """`median (min..max, n)` for a report line."""
    if not values:
        return "n/a"
    return f"{median(values):.3g} ({min(values):.3g}..{max(values):.3g}, n={len(values)})"


def unit_vectors(n: int, dim: int, seed: int, centres: np.ndarray | None = None, chunk: int = 100_000) -> np.ndarray:
    """Normalised Gaussian vectors, generated in chunks so 1M x 768 vectors needs one 3 GB array, not three;
    with `centres`, each is a random centre plus noise of about the same length (clustered, as
    embeddings of a real catalog are)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        if centres is not None:
            block = block / np.sqrt(dim) + centres[rng.integers(0, len(centres), len(block))]
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def demo_data(workdir: Path, images: int) -> Path:
    """The default demo dataset (seed 0, 128 px PNG), made once under `workdir` and reused."""
    from fashionrec.data.demo import make_demo_data

    root = workdir / f"demo-{images}"
    if not (root / "attributes.json").exists():  # written last by make_demo_data
        make_demo_data(root, images=images, seed=0)
    return root


def tiny_config(root: Path, workdir: Path, **overrides: object):
    """`TrainConfig` of a tiny-preset, random-init CPU run on demo data in `root`."""
    from fashionrec.train.params import TrainConfig

    settings: dict[str, object] = {
        "path_file": str(root),
        "path_folder": str(root / "images"),
        "preset": "tiny",
        "pretrained": False,
        "cache_dir": str(workdir / "cache"),
        "device": "cpu",
        "output_dir": str(workdir / "checkpoints"),
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (torch.set_num_threads; OMP_NUM_THREADS for child commands); "
        "default: torch's own choice, as a user gets",
    )


def apply_threads(threads: int | None) -> None:
    """On a small, shared machine 2 OpenMP threads can be many times slower than 1 (each op waits for
    both threads to be scheduled), so the benchmarks can be run both ways."""
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the commands a benchmark starts


def header(title: str) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join(getattr(sys, 'orig_argv', sys.argv))}")
