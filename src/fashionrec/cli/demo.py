"""`fashionrec demo`: the whole pipeline on generated demo data, CPU only, in a few minutes.

Each step runs the same code as its own command (shown before it runs): demo data, dataset report,
training, an interrupted run resumed and checked bit for bit against the uninterrupted one, evaluation,
the catalog index and a recommendation."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from fashionrec.errors import UserError

MARKER = ".fashionrec-demo"


def _step(title: str, argv: list[str]) -> None:
    from fashionrec.cli.main import main

    print(f"\n== {title}\n$ fashionrec {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    if code:
        raise UserError(f"demo step failed: fashionrec {' '.join(argv)} (exit {code})")
    print(f"({time.perf_counter() - start:.1f} s)", flush=True)


def _prepare(out: Path) -> None:
    """The demo owns its folder: reuse one it made before, never touch anyone else's."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"{out} exists and was not made by the demo; pass --out with a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `fashionrec demo`; safe to delete\n")
    for old in ("runs", "index"):
        shutil.rmtree(out / old, ignore_errors=True)


def run_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    _prepare(out)
    data, cache, runs = out / "data", out / "cache", out / "runs"
    images = data / "images"
    if not (data / "captions").is_dir():
        _step("1. demo data (FashionIQ layout)", ["make-demo-data", str(data), "--images", str(args.images)])
    else:
        print(f"\n== 1. demo data: reusing {data}")
    _step(
        "2. dataset report", ["dataset-info", "--path-file", str(data), "--path-folder", str(images), "--split", "val"]
    )

    common = [
        "--path-file",
        str(data),
        "--path-folder",
        str(images),
        "--preset",
        "tiny",
        "--batch",
        "32",
        "--gradient-accumulation",
        "1",
        "--lr",
        "1e-3",
        "--num-workers",
        "0",
        "--cache-dir",
        str(cache),
        "--epochs",
        str(args.epochs),
        "--seed",
        "0",
    ]
    full, parted = runs / "uninterrupted", runs / "interrupted"
    _step(f"3. train {args.epochs} epochs (tiny preset)", ["train", *common, "--output-dir", str(full)])
    stop = max(args.epochs // 2, 1)
    _step(
        f"4a. the same run, stopped after epoch {stop}",
        ["train", *common, "--stop-after-epochs", str(stop), "--output-dir", str(parted)],
    )
    _step("4b. resume it from its checkpoint folder", ["resume", "--checkpoint", str(parted), *common])
    final = next(full.glob("final_optimized_model_*.pt"))
    resumed = next(parted.glob("final_resumed_model_*.pt"))
    from fashionrec.model.checkpoint_format import differences, read

    diffs = differences(read(final), read(resumed))
    print(
        "\nresumed run vs uninterrupted run: "
        + ("bit-identical (weights, optimizer state, histories)" if not diffs else f"DIFFERENT: {diffs[:5]}")
    )
    if diffs:
        raise UserError("the resumed run differs from the uninterrupted one")

    _step(
        "5. evaluate (FashionIQ protocol, val split)",
        [
            "evaluate",
            "--checkpoint",
            str(final),
            "--path-file",
            str(data),
            "--path-folder",
            str(images),
            "--cache-dir",
            str(cache),
            "--num-workers",
            "0",
        ],
    )
    index = out / "index"
    _step(
        "6. index the catalog",
        ["index", "--checkpoint", str(final), "--images", str(images), "--out", str(index), "--cache-dir", str(cache)],
    )
    query = json.loads((data / "captions" / "cap.dress.val.json").read_text())[0]
    reference = next(images.glob(f"{query['candidate']}.*"))
    text = " and ".join(query["captions"])
    _step(
        f"7. recommend (the right answer is {query['target']})",
        [
            "recommend",
            "--checkpoint",
            str(final),
            "--index",
            str(index),
            "--image",
            str(reference),
            "--text",
            text,
            "-k",
            "5",
        ],
    )
    print(
        f"\nServe the demo catalog (HTTP API and web page on http://127.0.0.1:8000):\n"
        f"  fashionrec serve --checkpoint {final} --index {index}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on generated demo data (CPU, a few minutes)")
    p.add_argument("--out", type=Path, default=Path("demo_run"), help="working folder (default: demo_run)")
    p.add_argument("--images", type=int, default=600, help="demo images (default: 600)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs (default: 4)")
    p.set_defaults(func=run_demo)
