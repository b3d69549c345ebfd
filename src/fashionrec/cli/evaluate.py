"""`fashionrec evaluate`: the FashionIQ protocol on one split, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from fashionrec.data.args import add_vocab_arg
from fashionrec.data.fashioniq import parse_categories


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fashionrec.data.cache import ImageCache
    from fashionrec.data.fashioniq import load_split
    from fashionrec.data.images import drop_missing, image_paths
    from fashionrec.data.preprocess import PreprocessConfig
    from fashionrec.eval.retrieval import EvalSettings, evaluate, format_table
    from fashionrec.model import load_model
    from fashionrec.train.main import resolve_device

    model = load_model(args.checkpoint)
    splits = load_split(args.path_file, args.split, args.categories, args.text_model)
    if args.skip_missing:
        for name, split in splits.items():
            splits[name], _ = drop_missing(split, args.path_folder)
    cache = ImageCache(args.cache_dir, PreprocessConfig(image_size=model.config.image_size, **model.config.preprocess))
    cache.build(image_paths(splits.values(), args.path_folder))
    device = resolve_device(args.device)
    metrics = evaluate(
        model.to(device),
        splits,
        cache,
        EvalSettings(device=device, batch_size=args.batch, num_workers=args.num_workers),
    )
    print(json.dumps(metrics, indent=2) if args.json else format_table(metrics))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Recall@10/50 of a checkpoint on a FashionIQ split")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or model directory")
    p.add_argument("--path-file", required=True, help="annotations folder")
    p.add_argument("--path-folder", required=True, help="images folder")
    p.add_argument("--split", default="val", choices=("train", "val"), help="split to evaluate (default: val)")
    p.add_argument("--categories", type=parse_categories, default=None, help="comma-separated subset (default: all)")
    p.add_argument("--skip-missing", action="store_true", help="drop queries whose images are absent")
    p.add_argument("--cache-dir", default="cache", help="preprocessing cache folder (default: cache)")
    p.add_argument("--batch", type=int, default=64, help="encoding batch size (default: 64)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers (default: 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_vocab_arg(p)
    p.set_defaults(func=cmd_evaluate)
