"""`fashionrec demo`: the whole pipeline on generated demo data, CPU only, in a few minutes.

Each step runs the same code as its own command (shown before it runs): demo data, dataset report,
training, an interrupted run resumed and checked bit for bit against the uninterrupted one, evaluation
next to chance, the catalog index with its categories, a recommendation from a catalog item within its
category, and (with --serve) the web service on the demo catalog."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

from fashionrec import options as opt
from fashionrec.errors import UserError

MARKER = ".fashionrec-demo"
# Validation galleries of 200 per category make R@50 informative (chance 25 %); 150 training images per
# category keep training as long as the earlier 600-image demo (1,350 triplets an epoch). Measured on a
# shared 2-CPU machine: 132 s of CPU in all (6 min wall under a load of 6), R@10 43 %, R@50 100 %.
DEMO_IMAGES = 1050
VAL_IMAGES = 200
EPOCHS = 4


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
    out = Path(args.out)
    _prepare(out)
    listener = None
    if args.serve:  # bound first: a port in use is reported now, not after minutes of training
        from fashionrec.serve.listen import bind

        listener = bind("127.0.0.1", args.port)
    data, cache, runs = out / "data", out / "cache", out / "runs"
    images = data / "images"
    if not (data / "captions").is_dir():
        _step(
            "1. demo data (FashionIQ layout)",
            ["make-demo-data", str(data), "--images", str(args.images), "--val-images", str(args.val_images)],
        )
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
    _print_chance(data)
    index = out / "index"
    _step(
        "6. index the catalog, with each item's category from the split files",
        ["index", "--checkpoint", str(final), "--images", str(images), "--out", str(index), "--cache-dir", str(cache)]
        + ["--path-file", str(data)],
    )
    queries = json.loads((data / "captions" / "cap.dress.val.json").read_text())
    ranks = _catalog_ranks(final, index, queries)
    hits = [q for q, r in zip(queries, ranks, strict=True) if r is not None and r <= 5]
    print(
        f"\ncatalog ranks of the right answers of all {len(queries)} dress validation queries, among the "
        f"catalog's dresses: top 5 for {len(hits)} ({100 * len(hits) / len(queries):.0f} %), median rank "
        f"{_median_rank(ranks)}; a random ranking puts it in the top 5 for {_chance_top5(index):.1f} %"
    )
    first = queries[0]
    print(f"the first query ({first['candidate']} -> {first['target']}): rank {_rank_text(ranks[0])}")
    query = hits[0] if hits else first
    text = " and ".join(query["captions"])
    _step(
        f"7. recommend: catalog item {query['candidate']} changed as its caption says, among dresses "
        f"(the first query whose right answer, {query['target']}, the model puts in its top 5)"
        if hits
        else f"7. recommend: catalog item {query['candidate']} (the right answer is {query['target']})",
        ["recommend", "--checkpoint", str(final), "--index", str(index), "--item", query["candidate"]]
        + ["--text", text, "--category", "dress", "-k", "5"],
    )
    if listener is None:
        serve_command = f"fashionrec serve --checkpoint {final} --index {index} --port {args.port}"
        print(f"\nServe the demo catalog (HTTP API and web page), or run the demo with --serve:\n  {serve_command}")
        return 0
    from fashionrec.serve.listen import url
    from fashionrec.serve.server import serve

    port = listener.getsockname()[1]
    serve_command = f"fashionrec serve --checkpoint {final} --index {index} --port {port}"
    print(f"\n== 8. serve the demo catalog: open {url(listener)}\n$ {serve_command}", flush=True)
    serve(final, index, listener)
    return 0


def _print_chance(data: Path) -> None:
    """What a random ranking scores, so the recalls above mean something to a newcomer."""
    from fashionrec.data.fashioniq import load_split

    galleries = {name: len(s.gallery) for name, s in load_split(data, "val").items()}
    # The standard protocol ranks the whole gallery: Recall@K of a random ranking is K over its size.
    chance = ", ".join(
        f"{name} R@10 {100 * min(1, 10 / n):.1f} R@50 {100 * min(1, 50 / n):.1f}" for name, n in galleries.items()
    )
    print(f"chance level (a random ranking; galleries of {sorted(set(galleries.values()))} images): {chance}")


def _catalog_ranks(checkpoint: Path, index: Path, queries: list[dict]) -> list[int | None]:
    """Each query's right answer's rank among the catalog's dresses (None: beyond the top MAX_K)."""
    from fashionrec.index import MAX_K
    from fashionrec.index.recommend import Recommender

    recommender = Recommender.open(checkpoint, index, device="cpu")
    try:
        ranks = []
        for q in queries:
            found = recommender.recommend(
                None, " and ".join(q["captions"]), MAX_K, item_id=q["candidate"], category="dress"
            )
            ids = [m.id for m in found]
            ranks.append(ids.index(q["target"]) + 1 if q["target"] in ids else None)
        return ranks
    finally:
        recommender.close()


def _median_rank(ranks: list[int | None]) -> str:
    ordered = sorted(ranks, key=lambda r: math.inf if r is None else r)
    middle = ordered[len(ordered) // 2]
    return str(middle) if middle is not None else "beyond the top 100"


def _rank_text(rank: int | None) -> str:
    return "beyond the top 100" if rank is None else f"{rank}" + (" (a top-5 hit)" if rank <= 5 else "")


def _chance_top5(index: Path) -> float:
    """Top 5 of the catalog's dresses, the reference itself excluded."""
    from fashionrec.index.manifest import load_manifest

    dresses = sum("dress" in item.categories for item in load_manifest(index).items)
    return 100 * 5 / max(dresses - 1, 1)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on generated demo data (CPU, a few minutes)")
    p.add_argument(
        "--out", type=opt.folder_to_write("demo folder"), default="demo_run", metavar="DIR",
        help="working folder (default: demo_run)",
    )  # fmt: skip
    p.add_argument(
        "--images",
        type=opt.positive_int,
        default=DEMO_IMAGES,
        metavar="N",
        help=f"demo images (default: {DEMO_IMAGES})",
    )
    p.add_argument(
        "--val-images",
        type=opt.positive_int,
        default=VAL_IMAGES,
        metavar="N",
        help=f"validation gallery per category (default: {VAL_IMAGES}; R@50 needs well over 50)",
    )
    p.add_argument(
        "--epochs", type=opt.positive_int, default=EPOCHS, metavar="N", help=f"training epochs (default: {EPOCHS})"
    )
    p.add_argument("--serve", action="store_true", help="end by serving the demo catalog (Ctrl-C stops)")
    opt.PORT.with_help("port for --serve (0: any free port)").add_to(p)
    p.set_defaults(func=run_demo)
