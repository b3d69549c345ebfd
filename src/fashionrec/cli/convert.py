"""`fashionrec convert-original CKPT OUT`: a checkpoint of the original public system, rewritten in fashionrec's
own format (model config and tokenizer inside, backbone stored once), so it keeps working without that code.
`fashionrec export-original CKPT OUT`: the way back, a checkpoint of the `original` preset in the original
system's format, for its own `resume_training.py` and feature extractor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fashionrec.options import VOCAB, existing_file, new_file
from fashionrec.paths import new_path


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """Checked again when the command starts: OUT may have appeared since the command line was parsed."""
    return Path(args.checkpoint), new_path(args.out, "OUT")


def _report(out: Path, written: dict[str, Any]) -> None:
    moments = len((written.get("optimizer_state_dict") or {}).get("state", {}))
    print(
        f"wrote {out}: {len(written['model_state_dict'])} tensors, epoch {written['epoch']}, "
        f"optimizer moments for {moments} parameters, "
        f"{'with' if written.get('scheduler_state_dict') else 'no'} scheduler state"
    )


def cmd_convert_original(args: argparse.Namespace) -> int:
    source, out = _paths(args)
    from fashionrec.errors import UserError
    from fashionrec.model import checkpoint_format

    ckpt = checkpoint_format.read(source, note=lambda _: None, text_model=args.text_model)
    if not ckpt.from_original_system:
        raise UserError(f"{source} is not an original-format checkpoint (no target_block./reference_block. weights)")
    converted = dict(ckpt.data)
    checkpoint_format.write(out, converted)
    _report(out, converted)
    return 0


def cmd_export_original(args: argparse.Namespace) -> int:
    source, out = _paths(args)
    import torch

    from fashionrec.atomic import atomic_write
    from fashionrec.model import checkpoint_format
    from fashionrec.model.original_format import export_original

    ckpt = checkpoint_format.read(source, note=lambda _: None, text_model=args.text_model)
    exported, notes = export_original(ckpt.data, str(source))
    atomic_write(out, lambda f: torch.save(exported, f))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    _report(out, exported)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-original", help="rewrite a checkpoint of the original system in fashionrec's format")
    _add_files(p, "a .pt file written by the original train.py / resume_training.py", "the fashionrec checkpoint")
    p.set_defaults(func=cmd_convert_original)

    p = sub.add_parser(
        "export-original", help="write a checkpoint of the original preset in the original system's format"
    )
    _add_files(p, "a fashionrec checkpoint of the original preset", "the original-format .pt file")
    p.set_defaults(func=cmd_export_original)


def _add_files(p: argparse.ArgumentParser, source: str, written: str) -> None:
    p.add_argument("checkpoint", metavar="CKPT", type=existing_file("checkpoint"), help=source)
    p.add_argument("out", metavar="OUT", type=new_file("OUT"), help=f"{written} to write (never overwritten)")
    VOCAB.add_to(p)
