"""`fashionrec convert-original CKPT OUT`: a checkpoint of the original public system, rewritten in fashionrec's
own format (model config and tokenizer inside, backbone stored once), so it keeps working without that code."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionrec.data.args import add_vocab_arg


def cmd_convert_original(args: argparse.Namespace) -> int:
    import torch

    from fashionrec.atomic import atomic_write
    from fashionrec.errors import UserError
    from fashionrec.model.original_format import convert_original

    source, out = Path(args.checkpoint), Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; choose another OUT (nothing was written)")
    if not source.is_file():
        raise UserError(f"Checkpoint not found: {source}")
    try:
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file or one holding pickled objects: either way not readable safely
        raise UserError(f"{source} cannot be read as plain tensors and numbers ({type(e).__name__})") from e
    converted = convert_original(ckpt, str(source), args.text_model)
    atomic_write(out, lambda f: torch.save(converted, f))
    moments = len((converted["optimizer_state_dict"] or {}).get("state", {}))
    print(
        f"wrote {out}: {len(converted['model_state_dict'])} tensors, epoch {converted['epoch']}, "
        f"optimizer moments for {moments} parameters, "
        f"{'with' if converted['scheduler_state_dict'] else 'no'} scheduler state"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-original", help="rewrite a checkpoint of the original system in fashionrec's format")
    p.add_argument(
        "checkpoint", metavar="CKPT", help="a .pt file written by the original train.py / resume_training.py"
    )
    p.add_argument("out", metavar="OUT", help="the fashionrec checkpoint to write (never overwritten)")
    add_vocab_arg(p)
    p.set_defaults(func=cmd_convert_original)
