"""What caching the frozen CLIP's features buys the clip4cir preset on the CPU: training samples/s of the
Combiner on cached features against the same training step running CLIP's image and text encoders on every
sample (what an epoch would cost without the cache), and the one-time cost of computing the features.

    venv/bin/python benchmarks/bench_combiner.py --threads 1 [--model ViT-B-32] [--batch 32]

The CLIP is open_clip's `--model` architecture with random weights (no download; the compute is the real
model's): ViT-B-32 at 224 px by default, RN50x4 (CLIP4Cir's, 288 px) with `--model RN50x4`. The Combiner
has CLIP4Cir's widths (4x and 8x the feature width). Both variants are `Trainer.step` on one in-memory
batch of demo triplets (data loading not measured): "cached" reads the image and text features, "end to
end" gets pixels and token ids. Variants alternate within each round (the machine is shared); medians,
ratio of medians and median of per-round ratios.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from common import (
    DEFAULT_WORKDIR,
    add_threads_argument,
    alternate,
    apply_threads,
    demo_data,
    header,
    median,
    paired_ratios,
    spread,
    tiny_config,
)

from fashionrec.model import create_model
from fashionrec.train.data import build_cache, load_training_data, make_loader, run_preprocessing
from fashionrec.train.features import build_features, run_texts
from fashionrec.train.optim import frozen_parts
from fashionrec.train.schedule import onecycle_spec
from fashionrec.train.trainer import Trainer

RAW = argparse.RawDescriptionHelpFormatter


def window(trainer: Trainer, batch: dict[str, torch.Tensor], steps: int) -> float:
    """Training samples/s over `steps` optimizer steps on the in-memory batch."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step([batch])
    return steps * len(batch["index"]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--images", type=int, default=120, help="demo images whose features are computed")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cached-steps", type=int, default=50, help="steps per timed window, cached features")
    parser.add_argument("--end-to-end-steps", type=int, default=2, help="steps per timed window, end to end")
    parser.add_argument("--rounds", type=int, default=4)
    add_threads_argument(parser)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    apply_threads(args.threads)
    header(f"bench_combiner: clip4cir training step, cached features vs end to end ({args.model}, random, CPU)")

    data_root = demo_data(args.workdir, args.images)
    settings = {"model": args.model, "batch": args.batch, "gradient_accumulation": 1, "num_workers": 0}
    cfg = tiny_config(data_root, args.workdir, preset="clip4cir", **settings)
    data = load_training_data(cfg, log=lambda _: None)
    torch.manual_seed(0)
    model = create_model("clip4cir", pretrained=False, model=args.model)
    cache = build_cache(cfg, data, run_preprocessing(cfg, model.config))
    images = data.image_paths(cfg.path_folder)
    queries = data.triplets() + [t for split in data.val_splits.values() for t in split.triplets]
    texts = run_texts(queries, cfg.seed, cfg.epochs)
    cpu = torch.device("cpu")
    start = time.perf_counter()
    features, _ = build_features(
        model, frozen_parts(model, cfg), f"{args.workdir}/bench-combiner-{time.time_ns()}", images, cache, texts, cpu,
        args.batch, print,
    )  # fmt: skip
    build_s = time.perf_counter() - start
    print(f"features computed once: {len(images)} images and {len(texts)} caption texts in {build_s:.1f} s")

    spec = onecycle_spec(cfg.lr, 10**7)
    trainers = {
        "cached": Trainer(cfg, model, data, cache, cpu, None, spec, lambda _: 0, None, features),
        "end to end": Trainer(cfg, copy.deepcopy(model), data, cache, cpu, None, spec, lambda _: 0),
    }
    steps = {"cached": args.cached_steps, "end to end": args.end_to_end_steps}
    batches = {}
    for name, trainer in trainers.items():
        batches[name] = next(iter(make_loader(trainer.dataset, trainer.sampler, cfg, 0)))
        window(trainer, batches[name], 1)  # warm-up
    speed = alternate(
        {name: (lambda n=name: window(trainers[n], batches[n], steps[n])) for name in trainers}, args.rounds
    )
    combiner = sum(p.numel() for p in model.combiner.parameters()) / 1e6
    clip = sum(p.numel() for p in model.encoder.parameters()) / 1e6
    print(f"\nCLIP {args.model}: {clip:.1f}M parameters (frozen); Combiner {combiner:.1f}M; batch {args.batch}")
    print("| variant | samples/s, median (min..max, n) | vs end to end |")
    print("|---|---|---:|")
    for name in trainers:
        print(f"| {name} | {spread(speed[name])} | {median(speed[name]) / median(speed['end to end']):.0f}x |")
    ratios = paired_ratios(speed["cached"], speed["end to end"])
    print(f"cached / end to end: per-round ratios {spread(ratios)}")


if __name__ == "__main__":
    main()
