"""`fashionrec convert-original CKPT OUT`: a checkpoint of the original public system, rewritten in fashionrec's
own format (model config and tokenizer inside, backbone stored once), so it keeps working without that code."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionrec.options import VOCAB, existing_file, new_file


def cmd_convert_original(args: argparse.Namespace) -> int:
    from fashionrec.errors import UserError
    from fashionrec.model import checkpoint_format

    source, out = Path(args.checkpoint), Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; choose another OUT (nothing was written)")
    ckpt = checkpoint_format.read(source, note=lambda _: None, text_model=args.text_model)
    if not ckpt.from_original_system:
        raise UserError(f"{source} is not an original-format checkpoint (no target_block./reference_block. weights)")
    converted = dict(ckpt.data)
    checkpoint_format.write(out, converted)
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
        "checkpoint",
        metavar="CKPT",
        type=existing_file("checkpoint"),
        help="a .pt file written by the original train.py / resume_training.py",
    )
    p.add_argument(
        "out", metavar="OUT", type=new_file("OUT"), help="the fashionrec checkpoint to write (never overwritten)"
    )
    VOCAB.add_to(p)
    p.set_defaults(func=cmd_convert_original)
