"""Evaluation at FashionIQ-val scale (CPU, tiny preset): wall time of `fashionrec.eval.retrieval.evaluate`
and how many images pass through the backbone.

    venv/bin/python benchmarks/bench_eval.py [--threads 1] [--fashioniq data/fashioniq] [--workers 0,2]

The real val ids and triplets (3 categories: 6016 queries, 15536 gallery images) with one stand-in picture
per id (a random-colour square with a block of another colour on it, so the foreground crop has something
to find), written once under --workdir and reused, then preprocessed once into the cache. The model is the
tiny preset, random init, with a WordPiece vocabulary trained on the real train captions.

A forward hook on `model.backbone` counts samples: the backbone sees a sample's whole image and its crop
in one batch (2 images per sample), so each call adds batch / 2. Hooks on the target and reference
blocks split the count into gallery encodings and query encodings. The naive protocol it is compared
with encodes, per query, its reference and its own target (2 x queries), which ranks nothing but the
query's own target and repeats images shared by several queries.
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from common import (
    DEFAULT_WORKDIR,
    Stopwatch,
    add_threads_argument,
    alternate,
    apply_threads,
    header,
    load_average,
    spread,
)
from PIL import Image

from fashionrec.data.cache import ImageCache
from fashionrec.data.fashioniq import load_split
from fashionrec.data.images import image_paths, split_image_ids
from fashionrec.data.preprocess import PreprocessConfig
from fashionrec.eval.retrieval import EvalSettings, evaluate, format_table, select_queries
from fashionrec.model import create_model
from fashionrec.model.fashionvlp import FashionVLP

RAW = argparse.RawDescriptionHelpFormatter


def stand_in(image_id: str, size: int) -> Image.Image:
    """A picture that depends only on the id: background colour, and a block of another colour."""
    rng = np.random.default_rng(zlib.crc32(image_id.encode()))
    background, block = rng.integers(0, 256, size=(2, 3))
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = background
    x0, y0 = rng.integers(0, size // 3, size=2)
    x1, y1 = rng.integers(2 * size // 3, size + 1, size=2)
    pixels[y0:y1, x0:x1] = block
    return Image.fromarray(pixels)


def write_stand_ins(folder: Path, ids: list[str], size: int) -> int:
    """PNG stand-ins for the ids that have none yet; returns how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for image_id in ids:
        path = folder / f"{image_id}.png"
        if not path.exists():
            tmp = folder / f".{image_id}.png.tmp"
            stand_in(image_id, size).save(tmp, format="PNG")
            tmp.replace(path)  # a killed run never leaves a half-written picture behind
            written += 1
    return written


class BackboneCounter:
    """Samples (not images) through the backbone, split by the block that consumed them, and the time spent
    inside the backbone, the target block and the reference block."""

    def __init__(self, model: FashionVLP) -> None:
        self.reset()
        for name in ("backbone", "target", "reference"):
            module = getattr(model, name)
            module.register_forward_pre_hook(lambda _m, _i, name=name: self._enter(name))
            module.register_forward_hook(lambda _m, inputs, _o, name=name: self._leave(name, inputs))

    def reset(self) -> None:
        self.samples = {"backbone": 0, "target": 0, "reference": 0}
        self.seconds = {"backbone": 0.0, "target": 0.0, "reference": 0.0}
        self.calls = 0
        self._started: dict[str, float] = {}

    def _enter(self, name: str) -> None:
        self._started[name] = time.perf_counter()

    def _leave(self, name: str, inputs: tuple) -> None:
        self.seconds[name] += time.perf_counter() - self._started.pop(name)
        if name == "backbone":
            self.calls += 1
            self.samples[name] += inputs[0].shape[0] // 2  # whole images and crops, concatenated
        else:
            self.samples[name] += inputs[0].shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument(
        "--fashioniq",
        type=Path,
        default=Path("data/fashioniq"),
        help="FashionIQ annotations folder (captions/, image_splits/)",
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--categories", default="dress,shirt,toptee", help="comma-separated subset")
    parser.add_argument("--image-size", type=int, default=64, help="side of the stand-in pictures")
    parser.add_argument("--batch", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--workers", default="0", help="comma-separated num_workers values, alternated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    add_threads_argument(parser)
    args = parser.parse_args()
    apply_threads(args.threads)

    header("bench_eval: FashionIQ-val-scale evaluation (tiny preset, CPU, stand-in images)")
    splits = load_split(args.fashioniq, args.split, args.categories.split(","))
    ids = list(dict.fromkeys(i for s in splits.values() for i in split_image_ids(s)))
    folder = args.workdir / f"fashioniq-stand-ins-{args.image_size}"
    with Stopwatch() as made:
        written = write_stand_ins(folder, ids, args.image_size)
    print(f"stand-in pictures: {len(ids)} ids, {written} written now ({made.seconds:.1f} s) in {folder}")

    torch.manual_seed(0)
    train = load_split(args.fashioniq, "train")
    texts = [" and ".join(t.captions) for s in train.values() for t in s.triplets]
    model = create_model("tiny", texts, pretrained=False)
    config = PreprocessConfig(image_size=model.config.image_size, crop="foreground")
    cache = ImageCache(args.workdir / "cache", config)
    with Stopwatch() as built:
        processed = cache.build(image_paths(splits.values(), folder))
    print(f"preprocessing cache: {processed} images processed now ({built.seconds:.1f} s)")

    everything = EvalSettings(device=torch.device("cpu"))
    queries = {name: len(select_queries(s, everything)) for name, s in splits.items()}
    gallery = {name: len(s.gallery) for name, s in splits.items()}
    candidates = {name: len({t.candidate for t in s.triplets}) for name, s in splits.items()}
    targets = {name: len({t.target for t in s.triplets}) for name, s in splits.items()}
    for name in splits:
        print(
            f"  {name:<7} {queries[name]:>5} queries ({candidates[name]} distinct candidates, "
            f"{targets[name]} distinct targets), gallery {gallery[name]}"
        )
    n_queries, n_gallery = sum(queries.values()), sum(gallery.values())
    print(f"  total   {n_queries:>5} queries, gallery {n_gallery}")

    counter = BackboneCounter(model)
    runs: dict[str, dict] = {}
    metrics = {}

    def run(workers: int) -> float:
        counter.reset()
        settings = EvalSettings(device=torch.device("cpu"), batch_size=args.batch, num_workers=workers)
        cpu = time.process_time()
        with Stopwatch() as clock:
            metrics[workers] = evaluate(model, splits, cache, settings)
        runs[f"nw={workers}"] = {
            "cpu": time.process_time() - cpu,
            "calls": counter.calls,
            "samples": dict(counter.samples),
            "seconds": dict(counter.seconds),
        }
        return clock.seconds

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    print(f"\nevaluate(): batch {args.batch}, {args.rounds} round(s), variants alternate")
    results = alternate({f"nw={w}": (lambda w=w: run(w)) for w in workers}, args.rounds)

    print("\nwall time of evaluate(), seconds, median (min..max, n):")
    for name, seconds in results.items():
        last = runs[name]
        inside = ", ".join(f"{k} {v:.1f} s" for k, v in last["seconds"].items())
        print(f"  {name:<6} {spread(seconds)}")
        print(
            f"         last run: {last['cpu']:.1f} s CPU time in this process; inside {inside} "
            f"(wall); {last['samples']['backbone'] / seconds[-1]:.0f} backbone samples/s overall"
        )
    last = next(iter(runs.values()))
    backbone, target, reference = (last["samples"][k] for k in ("backbone", "target", "reference"))
    naive = 2 * n_queries
    print("\nbackbone samples (image + crop each) per evaluate():")
    print(
        f"  counted by the hook:            {backbone}  ({last['calls']} calls; target block {target}, "
        f"reference block {reference})"
    )
    print(f"  expected, gallery + queries:    {n_gallery + n_queries}  ({n_gallery} + {n_queries})")
    print(f"  naive, reference + own target:  {naive}  (2 x {n_queries}); counted / naive = {backbone / naive:.2f}")
    distinct = sum(candidates.values())
    print(
        f"  distinct reference images:      {distinct}  (a candidate used by k queries goes through the "
        f"backbone k times)"
    )
    print(
        f"  minimum (every candidate is in its gallery; backbone maps shared): {n_gallery}  "
        f"= {n_gallery / backbone:.2f} x counted"
    )
    print("\nrecall of the untrained model (chance level, a sanity check):")
    print(format_table(next(iter(metrics.values()))))
    print(f"\nfinished; load average now {load_average()}")


if __name__ == "__main__":
    main()
