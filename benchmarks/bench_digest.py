"""The cost of the checkpoint content digest: save and load time with and without it, at the tiny and
paper presets' sizes (weights + AdamW's two moments, as a training checkpoint holds them).

    venv/bin/python benchmarks/bench_digest.py [--threads 1] [--rounds 3] [--presets tiny,paper]

"plain" is what a checkpoint cost before the digest: an atomic `torch.save` and a weights-only
`torch.load`. "digest" is `checkpoint_format.write` (the digest over every tensor, then the same atomic
save) and `checkpoint_format.read` (the same load, then the digest recomputed and compared); "digest only"
is the sha256 pass alone. Rounds alternate the variants; medians are printed."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import add_threads_argument, alternate, apply_threads, header, median, spread

from fashionrec.atomic import atomic_write
from fashionrec.model import checkpoint_format, create_model

TEXTS = ["is red with long sleeves", "is darker and shorter", "has a floral print"] * 20


def training_sized_state(preset: str) -> dict:
    """A checkpoint-shaped dict: the preset's weights and two AdamW moments per parameter."""
    torch.manual_seed(0)
    model = create_model(preset, TEXTS, pretrained=False)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    moments = {
        i: {"step": torch.tensor(10.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
        for i, p in enumerate(model.parameters())
    }
    return {"epoch": 1, "model_state_dict": weights, "optimizer_state_dict": {"state": moments, "param_groups": []}}


def seconds(work: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", default="tiny,paper")
    add_threads_argument(parser)
    args = parser.parse_args()
    apply_threads(args.threads)
    header("checkpoint content digest: save and load, with and without")
    with tempfile.TemporaryDirectory() as tmp:
        plain, digest = Path(tmp) / "plain.pt", Path(tmp) / "digest.pt"
        for preset in args.presets.split(","):
            state = training_sized_state(preset)
            results = alternate(
                {
                    "save plain": seconds(lambda s=state: atomic_write(plain, lambda f: torch.save(s, f))),
                    "save digest": seconds(lambda s=state: checkpoint_format.write(digest, s)),
                    "load plain": seconds(lambda: torch.load(plain, map_location="cpu", weights_only=True)),
                    "load digest": seconds(lambda: checkpoint_format.read(digest, note=lambda _: None)),
                    "digest only": seconds(lambda s=state: checkpoint_format.content_digest(s)),
                },
                args.rounds,
            )
            size = digest.stat().st_size / 2**20
            print(f"\n{preset}: {size:.1f} MiB per checkpoint; seconds, median (min..max, n)")
            for name, values in results.items():
                print(f"  {name:<12} {spread(values)}")
            for what in ("save", "load"):
                ratio = median(results[f"{what} digest"]) / median(results[f"{what} plain"])
                print(f"  {what}: digest / plain {ratio:.2f}")
            del state


if __name__ == "__main__":
    main()
