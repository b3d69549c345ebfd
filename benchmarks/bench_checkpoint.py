"""The cost of checkpointing (tiny preset, CPU, demo data).

    venv/bin/python benchmarks/bench_checkpoint.py [--threads 1] [--part all|epoch|resume] [--rounds 4]

Part `epoch`: the time of one epoch as `Trainer.fit` runs it (training steps, validation, checkpoint
writes), for three trainers built alike and alternated epoch by epoch:
  - no saves       (no checkpoint manager),
  - epoch saves    (the default: one checkpoint per epoch, plus the hard-linked best file),
  - + every N      (also `--save-every-steps N`).
Reported: median epoch seconds, ratios to "no saves" (medians, and the median of per-round ratios; aim
< 1.05); the time spent saving inside those same epochs (`Trainer.state_dict()` and the checkpoint
format module's `write`, wrapped with timers in this process) and each epoch's ratio with / without it, which
other processes' load cannot skew; and the cost of one checkpoint measured on its own.

Part `resume`: wall time from starting a command, as a user does, to its first optimizer step finishing:
  - resume:  `fashionrec resume --checkpoint <epoch-1 file> --epochs 2 --path-file .. --path-folder ..`
             (the file comes from a `fashionrec train --epochs 1` run made once in the setup),
  - train:   `fashionrec train ... --epochs 1` from scratch, for comparison.
Each runs as `python -c "<import the CLI and fashionrec.train.main; print a marker; cli.main(argv)>"`:
the same code path as the `fashionrec` script, plus one line on stdout when the imports are done.
The first step is seen on the progress bar (stderr): the bar appears as `0/N` when the epoch starts and
shows `1/N` right after the first step (its postfix refresh is forced every step). The command is then
killed (its own process group, SIGKILL). Reported per phase, from process start: imports done; the
"resuming from" / "training" line (checkpoint, data, model, cache index, Trainer ready); the bar (epoch
started); `1/N` (first step done).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from common import (
    DEFAULT_WORKDIR,
    Stopwatch,
    add_threads_argument,
    alternate,
    apply_threads,
    demo_data,
    header,
    load_average,
    median,
    paired_ratios,
    spread,
    tiny_config,
)

from fashionrec.model import checkpoint_format, create_model
from fashionrec.train.checkpoint import TRAIN_PREFIX, CheckpointManager
from fashionrec.train.data import build_cache, load_training_data
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer

RAW = argparse.RawDescriptionHelpFormatter
CPU = torch.device("cpu")
FASHIONREC = [sys.executable, "-m", "fashionrec"]
IMPORTED = b"benchmark: imports done"
# `fashionrec ARGS` with a marker once everything the train/resume path imports is imported.
MARKED_CLI = [
    sys.executable,
    "-c",
    "import sys; from fashionrec.cli import main as cli; import fashionrec.train.main; "
    f"print({IMPORTED.decode()!r}, flush=True); sys.exit(cli.main(sys.argv[1:]))",
]
BAR = re.compile(rb"epoch \d+/\d+:[^\r\n]*?\|\s*(\d+)/\d+")


# ---- part 1: epoch time with and without checkpoints -----------------------------------------------------


def epoch_part(args: argparse.Namespace, root: Path) -> None:
    base = tiny_config(
        root,
        args.workdir,
        batch=args.batch,
        gradient_accumulation=1,
        epochs=10**6,
        num_workers=args.num_workers,
        keep_last=args.keep_last,
    )
    data = load_training_data(base, log=lambda _: None)
    torch.manual_seed(0)
    preprocess = create_model("tiny", data.train_texts(), pretrained=False).config.preprocess_config()
    cache = build_cache(base, data, preprocess)
    out = args.workdir / f"ckpt-bench-{os.getpid()}"

    def trainer(name: str, save_every: int, with_manager: bool) -> Trainer:
        cfg = dataclasses.replace(base, save_every_steps=save_every, output_dir=str(out / name))
        torch.manual_seed(0)
        model = create_model("tiny", data.train_texts(), pretrained=False)
        manager = CheckpointManager(cfg.output_dir, TRAIN_PREFIX, cfg.keep_last) if with_manager else None
        schedule = onecycle_spec(cfg.lr, 10**7)  # never runs out of steps
        return Trainer(cfg, model, data, cache, CPU, manager, schedule, log=lambda _: None)

    every = f"+ every {args.save_every_steps}"
    trainers = {
        "no saves": trainer("none", 0, False),
        "epoch saves": trainer("epoch", 0, True),
        every: trainer("steps", args.save_every_steps, True),
    }
    steps = -(-len(data.triplets()) // args.batch)
    queries = sum(len(s.triplets) for s in data.val_splits.values())
    print(
        f"part epoch: {len(data.triplets())} training triplets, {queries} validation queries; "
        f"batch {args.batch}, {steps} steps per epoch, num_workers {args.num_workers}, "
        f"keep_last {args.keep_last}; checkpoints in {out}"
    )

    # In-situ cost of the saves, timed inside the same epochs: state_dict() on each trainer, and the module's
    # checkpoint_format.write (the atomic write the manager calls, digest included). Instrumentation only;
    # the library is not changed.
    in_epoch = {"state_dict": 0.0, "write": 0.0}
    save_costs: dict[str, list[float]] = {name: [] for name in trainers}

    def timed(function, key: str):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                in_epoch[key] += time.perf_counter() - start

        return wrapper

    write = checkpoint_format.write
    checkpoint_format.write = timed(write, "write")
    for t in trainers.values():
        t.state_dict = timed(t.state_dict, "state_dict")

    def one_epoch(name: str) -> float:
        t = trainers[name]
        t.cfg.stop_after_epochs = t.progress.epoch + 1  # fit() then runs exactly one more epoch
        in_epoch.update(state_dict=0.0, write=0.0)
        with Stopwatch() as clock:
            t.fit()
        save_costs[name].append(in_epoch["state_dict"] + in_epoch["write"])
        return clock.seconds

    if args.warmup:
        print("  warm-up: one epoch each")
        for name in trainers:
            one_epoch(name)
        for costs in save_costs.values():
            costs.clear()
    results = alternate({name: (lambda n=name: one_epoch(n)) for name in trainers}, args.rounds)
    checkpoint_format.write = write

    print("\nepoch seconds (train + validate + saves), median (min..max, n):")
    for name, values in results.items():
        print(f"  {name:<14} {spread(values)}")
    for name in list(trainers)[1:]:
        ratios = paired_ratios(results[name], results["no saves"])
        of_medians = median(results[name]) / median(results["no saves"])
        print(f"  {name} / no saves: ratio of medians {of_medians:.3f}; per-round ratios {spread(ratios)}")
    print(
        "in-situ: seconds spent saving (state_dict + atomic writes) inside each epoch, and the epoch's own "
        "ratio with / without that time (same epoch, so the same load):"
    )
    for name in list(trainers)[1:]:
        costs = save_costs[name]
        own = [e / (e - c) for e, c in zip(results[name], costs, strict=True)]
        print(f"  {name:<14} saving {spread(costs)} s per epoch; epoch / (epoch - saving) {spread(own)}")

    t = trainers["epoch saves"]
    files = sorted(Path(t.cfg.output_dir).glob("*.pt"))
    size = files[-1].stat().st_size if files else 0
    state_s, write_s = [], []
    for _ in range(5):
        with Stopwatch() as clock:
            state = t.state_dict()
        state_s.append(clock.seconds)
        with Stopwatch() as clock:
            write(out / "alone.pt", state)
        write_s.append(clock.seconds)
    print(
        f"\none checkpoint alone ({size / 2**20:.1f} MiB): state_dict() {1000 * median(state_s):.1f} ms, "
        f"atomic write (digest, temp file, fsync, rename, fsync dir) {1000 * median(write_s):.1f} ms "
        f"(medians of 5)"
    )
    saved = {name: len(list(Path(t.cfg.output_dir).glob("*.pt"))) for name, t in trainers.items()}
    print(f"files written per trainer (incl. best links): {saved}")
    if not args.keep_files:
        shutil.rmtree(out, ignore_errors=True)


# ---- part 2: time to first step of a command ----------------------------------------------------------


@dataclasses.dataclass
class Timeline:
    imports: float = float("nan")  # the wrapper's marker line
    setup: float = float("nan")  # the "resuming from" / "training ..." line
    bar: float = float("nan")  # the epoch's progress bar appears (0/N)
    first_step: float = float("nan")  # the bar shows 1/N
    exit_code: int | None = None
    stderr_tail: bytes = b""


def run_until_first_step(command: list[str], setup_marker: bytes, timeout: float) -> Timeline:
    """Start `command`, timestamp the phases from its output, kill it after its first optimizer step."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    timeline = Timeline()
    done = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)

    def watch_stdout() -> None:
        for line in proc.stdout:
            now = time.perf_counter() - start
            if IMPORTED in line and math.isnan(timeline.imports):
                timeline.imports = now
            if setup_marker in line and math.isnan(timeline.setup):
                timeline.setup = now
        done.set()  # the command ended before its first step

    def watch_stderr() -> None:
        seen = b""
        while chunk := proc.stderr.read1(65536):
            seen = (seen + chunk)[-4096:]
            timeline.stderr_tail = seen
            now = time.perf_counter() - start
            for match in BAR.finditer(seen):
                if math.isnan(timeline.bar):
                    timeline.bar = now
                if int(match.group(1)) >= 1:
                    timeline.first_step = now
                    done.set()
                    return

    threads = [threading.Thread(target=f, daemon=True) for f in (watch_stdout, watch_stderr)]
    for thread in threads:
        thread.start()
    done.wait(timeout)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its DataLoader workers: our own group
    timeline.exit_code = proc.wait()
    return timeline


def resume_part(args: argparse.Namespace, root: Path) -> None:
    out = args.workdir / f"resume-bench-{os.getpid()}"
    flags = [
        "--path-file",
        str(root),
        "--path-folder",
        str(root / "images"),
        "--preset",
        "tiny",
        "--no-pretrained",
        "--batch",
        str(args.batch),
        "--gradient-accumulation",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        str(args.workdir / "cache"),
        "--num-workers",
        str(args.num_workers),
    ]
    print(f"\npart resume: making the checkpoint: fashionrec train {' '.join(flags)} --epochs 1 ...")
    with Stopwatch() as clock:
        subprocess.run(
            [*FASHIONREC, "train", *flags, "--epochs", "1", "--output-dir", str(out / "source")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    checkpoint = next((out / "source").glob(f"{TRAIN_PREFIX}_epoch_1_recall_*.pt"))
    print(f"  {checkpoint.name} ({checkpoint.stat().st_size / 2**20:.1f} MiB) after {clock.seconds:.0f} s")

    counter = iter(range(10**6))
    commands = {
        # resume requires --path-file and --path-folder again (the checkpoint has them, but argparse asks)
        "resume": lambda: [
            *MARKED_CLI,
            "resume",
            "--checkpoint",
            str(checkpoint),
            "--epochs",
            "2",
            *flags[:4],
            "--output-dir",
            str(out / f"resumed-{next(counter)}"),
        ],
        "train": lambda: [
            *MARKED_CLI,
            "train",
            *flags,
            "--epochs",
            "1",
            "--output-dir",
            str(out / f"fresh-{next(counter)}"),
        ],
    }
    markers = {"resume": b"resuming from", "train": b"training tiny"}
    timelines: dict[str, list[Timeline]] = {name: [] for name in commands}

    def measure(name: str) -> float:
        timeline = run_until_first_step(commands[name](), markers[name], args.timeout)
        timelines[name].append(timeline)
        if math.isnan(timeline.first_step):
            tail = timeline.stderr_tail.decode(errors="replace").strip().splitlines()[-3:]
            print(f"  warning: {name} showed no first step (exit code {timeline.exit_code}): {' | '.join(tail)}")
        return timeline.first_step

    print("  shown as: process start -> first step done, seconds")
    alternate({name: (lambda n=name: measure(n)) for name in commands}, args.resume_rounds)
    print("\nseconds from process start, median (min..max, n):")
    phases = ("imports", "setup", "bar", "first_step")
    titles = ("imports done", "setup line", "bar shown (0/N)", "first step done")
    print("  " + f"{'command':<8}" + "".join(f"{t:>24}" for t in titles))
    for name, runs in timelines.items():
        cells = [spread([getattr(t, phase) for t in runs if not math.isnan(getattr(t, phase))]) for phase in phases]
        print(f"  {name:<8}" + "".join(f"{c:>24}" for c in cells))
    for name, runs in timelines.items():
        steps = [(t.imports, t.setup - t.imports, t.bar - t.setup, t.first_step - t.bar) for t in runs]
        parts = [spread([s[i] for s in steps if not math.isnan(s[i])]) for i in range(4)]
        print(
            f"  {name}: imports {parts[0]}, then setup {parts[1]}, then to the bar {parts[2]}, "
            f"then the first step (DataLoader start, one batch, one step) {parts[3]}"
        )
    if not args.keep_files:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--part", choices=("all", "epoch", "resume"), default="all")
    parser.add_argument("--images", type=int, default=300, help="demo images (300: 675 training triplets)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--save-every-steps", type=int, default=10)
    parser.add_argument("--keep-last", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the epoch part")
    parser.add_argument("--resume-rounds", type=int, default=3, help="rounds of the resume part")
    parser.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=False, help="one untimed epoch per trainer first"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a first step")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep-files", action="store_true", help="keep the checkpoints written")
    add_threads_argument(parser)
    args = parser.parse_args()
    apply_threads(args.threads)

    header("bench_checkpoint: epoch time with checkpoints, and time to the first step of `resume`")
    root = demo_data(args.workdir, args.images)
    if args.part in ("all", "epoch"):
        epoch_part(args, root)
    if args.part in ("all", "resume"):
        resume_part(args, root)
    print(f"\nfinished; load average now {load_average()}")


if __name__ == "__main__":
    main()
