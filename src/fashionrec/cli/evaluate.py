"""`fashionrec evaluate`: the FashionIQ protocol on one split, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from fashionrec import options as opt
from fashionrec.data.fashioniq import SPLITS


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fashionrec.data.cache import ImageCache
    from fashionrec.data.images import image_paths, load_split_with_images
    from fashionrec.device import resolve_device, set_threads
    from fashionrec.eval.retrieval import EvalSettings, evaluate, format_table
    from fashionrec.model import load_model

    set_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, args.text_model)
    splits = load_split_with_images(
        args.path_file, args.path_folder, args.split, args.categories, args.skip_missing, text_model=args.text_model
    )
    cache = ImageCache(args.cache_dir, model.config.preprocess_config())
    cache.build(image_paths(splits.values(), args.path_folder))
    metrics = evaluate(
        model.to(device),
        splits,
        cache,
        EvalSettings(
            device=device, batch_size=args.batch, num_workers=args.num_workers, exclude_reference=args.exclude_reference
        ),
    )
    print(json.dumps(metrics, indent=2) if args.json else format_table(metrics))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Recall@10/50 of a checkpoint on a FashionIQ split")
    opt.CHECKPOINT.add_to(p, required=True)
    opt.add_dataset_options(p)
    opt.add_options(p, opt.CACHE_DIR, opt.BATCH, opt.NUM_WORKERS, opt.DEVICE, opt.THREADS, opt.VOCAB)
    evaluation = opt.option_group(p, "evaluation")
    evaluation.add_argument("--split", default="val", choices=SPLITS, help="split to evaluate (default: val)")
    evaluation.add_argument("--json", action="store_true", help="print one JSON object")
    evaluation.add_argument(
        "--exclude-reference",
        action="store_true",
        help="drop each query's reference image from its ranking (not the standard FashionIQ protocol)",
    )
    p.set_defaults(func=cmd_evaluate)
