"""`fashionrec init --preset clip --model NAME OUT`: a model made from pretrained weights alone, with no
training, written as a self-describing model directory (config, tokenizer, weights) that `index`,
`recommend`, `serve` and `evaluate` take as `--checkpoint`."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from fashionrec import options as opt


def cmd_init(args: argparse.Namespace) -> int:
    out = Path(args.out)  # checked not to exist when the command line was read
    from fashionrec.model import create_model, save_pretrained

    model = create_model(args.preset, pretrained=args.pretrained, model=args.model, text_model=args.text_model)
    model.config.preprocess = model.config.preprocess_config(resize=args.resize).model_settings()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.init-{os.getpid()}.tmp"
    try:  # written whole, then renamed: OUT is never half a model
        save_pretrained(model, staging)
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    settings = model.config.preprocess_config()
    print(
        f"wrote {out}: preset {model.config.preset}, {args.model or 'the preset default'}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {settings.image_size} px "
        f"({settings.resize}), embeddings of {model.config.d_model}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from fashionrec.model.registry import PresetNames

    p = sub.add_parser("init", help="a model from pretrained weights alone (zero-shot: --preset clip), no training")
    p.add_argument(
        "out", metavar="OUT", type=opt.new_file("OUT"), help="the model directory to write (never overwritten)"
    )
    opt.Option("--preset", "clip", "model preset", choices=PresetNames(), group="model").add_to(p)
    opt.add_options(p, opt.MODEL, opt.RESIZE, opt.VOCAB)
    opt.Option(
        "--pretrained", True, "start from the pretrained weights; --no-pretrained: random ones", switch=True
    ).add_to(p)
    p.set_defaults(func=cmd_init)
