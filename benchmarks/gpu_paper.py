"""GPU training throughput and peak memory of the paper preset (ResNet-50 + bert-base, 224 px).

    venv/bin/python benchmarks/gpu_paper.py                  # a few minutes on one H200 (compilation)
    venv/bin/python benchmarks/gpu_paper.py --variants fp32,bf16 --steps 10    # eager only, about a minute

Random initialisation, as `--no-pretrained`: `create_model("paper", texts, pretrained=False)`, whose text
side is bert-base's architecture with a WordPiece vocabulary trained on the given texts (here: synthetic
captions, so about 1000 tokens instead of bert-base's 30522; the rest of BERT is full size).

Each variant builds a fresh model and AdamW (the Trainer's settings) and runs training steps the way
`Trainer.step` does with gradient accumulation 1: forward under autocast (bf16 variants), loss outside
it, backward, optimizer step, zero_grad, and the loss read back to the host (one synchronisation per
step, as the loop's loss logging does). The batch (random uint8 images for reference and target, whole
picture and crop, landmarks, captions) stays on the GPU, so data loading is not measured.

- warm-up: --warmup steps, untimed (the first one includes torch.compile's compilation; its time is shown);
- timing: --windows windows of --steps steps, each between two torch.cuda.synchronize(); samples/s is the
  median over windows;
- peak memory: torch.cuda.max_memory_allocated() over warm-up and timing, after resetting the peak once the
  model, optimizer and batch are on the GPU (so it includes weights, gradients, AdamW moments, activations).

A variant that fails (compilation error, out of memory) is reported in the table with its error and the
others still run; variants not started within --budget-s seconds are skipped. Without CUDA the script says
so and exits 0 (pass --device cpu with --preset tiny to check the script itself on a CPU).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import traceback
from dataclasses import dataclass

import torch
from common import header

from fashionrec.model import create_model
from fashionrec.model.fashionvlp import FashionVLP

RAW = argparse.RawDescriptionHelpFormatter
VARIANTS = ("fp32", "bf16", "fp32+compile", "bf16+compile")
ADAMW_LR, WEIGHT_DECAY = 4e-4, 0.01  # as the Trainer builds its AdamW

COLOURS = ("red", "blue", "green", "black", "white", "pink", "purple", "yellow", "grey", "navy")
THINGS = ("sleeves", "collar", "pattern", "stripes", "dots", "print", "buttons", "logo", "lace", "pockets")
VERBS = ("is", "has", "is more", "has longer", "has shorter", "is less", "has no", "has a")


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """Caption-like texts for training the WordPiece vocabulary of the random-init text model."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(VERBS)} {rng.choice(COLOURS)} {rng.choice(THINGS)} and {rng.choice(VERBS)} "
        f"{rng.choice(COLOURS)} with {rng.choice(THINGS)}"
        for _ in range(n)
    ]


def random_batch(model: FashionVLP, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A training batch in the shapes and dtypes `TripletDataset` produces, made on `device`."""
    cfg, g = model.config, torch.Generator(device="cpu").manual_seed(0)
    size, points, length = cfg.image_size, cfg.num_landmarks, cfg.max_text_len
    vocab = model.tokenizer.vocab_size
    out: dict[str, torch.Tensor] = {}
    for side in ("ref_", "tgt_"):
        for kind in ("image", "crop"):
            out[side + kind] = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
        out[side + "landmarks"] = torch.rand(batch, points, 2, generator=g)
        out[side + "landmark_mask"] = torch.rand(batch, points, generator=g) < 0.7
    lengths = torch.randint(8, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    out["input_ids"] = torch.randint(5, max(vocab, 6), (batch, length), generator=g) * mask
    out["attention_mask"] = mask
    out["index"] = torch.arange(batch)
    return {k: v.to(device) for k, v in out.items()}


@dataclass
class Result:
    variant: str
    samples_per_s: float = float("nan")
    step_ms: float = float("nan")
    peak_gib: float = float("nan")
    weights_gib: float = float("nan")
    first_step_s: float = float("nan")
    windows: tuple[float, ...] = ()
    error: str = ""


def train_step(
    train_model: torch.nn.Module,
    model: FashionVLP,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    bf16: bool,
) -> float:
    """One optimizer step as `Trainer._accumulate` takes it with a single micro-batch."""
    device_type = batch["index"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        f_ref, f_tar = train_model(batch)
    loss = model.loss(f_ref, f_tar)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()  # the loop reads the loss back every step


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variant(variant: str, args: argparse.Namespace, texts: list[str], device: torch.device) -> Result:
    result = Result(variant)
    bf16, compiled = variant.startswith("bf16"), variant.endswith("+compile")
    torch.manual_seed(0)
    model = create_model(args.preset, texts, pretrained=False).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=ADAMW_LR, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY)
    batch = random_batch(model, args.batch, device)
    if device.type == "cuda":
        sync(device)
        result.weights_gib = torch.cuda.memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    train_model = torch.compile(model) if compiled else model

    def step() -> float:
        return train_step(train_model, model, optimizer, batch, bf16)

    try:
        for i in range(args.warmup):
            start = time.perf_counter()
            step()
            if i == 0:
                result.first_step_s = time.perf_counter() - start
        rates = []
        for _ in range(args.windows):
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            rates.append(args.steps * args.batch / (time.perf_counter() - start))
        rates.sort()
        result.windows = tuple(rates)
        result.samples_per_s = rates[len(rates) // 2]
        result.step_ms = 1000 * args.batch / result.samples_per_s
        if device.type == "cuda":
            result.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    except Exception as e:  # compilation errors and OOM: report, keep going with the other variants
        traceback.print_exc(file=sys.stderr)
        result.error = one_line(e)
    finally:
        train_model = model = optimizer = batch = None  # free the GPU memory before the next variant
        gc.collect()
        if compiled:
            torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (>= 1; compile happens here)")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="start no new variant after this many seconds (a compiled variant can take 2-3 min "
        "more; the run should stay under 8 min)",
    )
    parser.add_argument("--preset", default="paper", help="paper (the point), or tiny to check the script")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a check of the script only)")
    parser.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set torch.backends TF32 for matmuls and cuDNN (default: leave torch's defaults)",
    )
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_paper: skipped: CUDA is not available on this machine (this benchmark needs a GPU; "
            "`--device cpu --preset tiny` only checks that the script runs)"
        )
        return 0
    if args.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    header(f"gpu_paper: training steps of the {args.preset} preset, batch {args.batch}")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(
            f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}; "
            f"bf16 supported: {torch.cuda.is_bf16_supported()}"
        )
    print(
        f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}; "
        f"cudnn.benchmark {torch.backends.cudnn.benchmark}"
    )
    print(
        f"timing: {args.warmup} warm-up steps, then {args.windows} windows of {args.steps} steps; "
        f"budget {args.budget_s:.0f} s"
    )

    texts = synthetic_captions(20000)
    started = time.perf_counter()
    results = []
    for variant in variants:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            results.append(Result(variant, error=f"skipped: {elapsed:.0f} s elapsed > --budget-s {args.budget_s:.0f}"))
            continue
        print(f"  {variant}: running ({elapsed:.0f} s elapsed)", flush=True)
        try:
            result = run_variant(variant, args, texts, device)
        except Exception as e:  # building the model or batch failed (e.g. out of memory)
            traceback.print_exc(file=sys.stderr)
            result = Result(variant, error=one_line(e))
        results.append(result)
        print(
            f"  {variant}: {result.samples_per_s:.1f} samples/s, windows "
            f"{', '.join(f'{r:.1f}' for r in result.windows) or '-'}{'; ' + result.error if result.error else ''}",
            flush=True,
        )

    eager = {r.variant: r.samples_per_s for r in results}
    print("\n| variant | samples/s | ms/step | vs fp32 | peak GiB | weights GiB | first step s | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        speedup = r.samples_per_s / eager.get("fp32", float("nan"))
        print(
            f"| {r.variant} | {r.samples_per_s:.1f} | {r.step_ms:.0f} | {speedup:.2f}x | {r.peak_gib:.2f} | "
            f"{r.weights_gib:.2f} | {r.first_step_s:.1f} | {r.error} |"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
