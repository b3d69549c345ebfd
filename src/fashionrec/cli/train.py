"""`fashionrec train` and `fashionrec resume` (also `python train.py` / `python resume_training.py`)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from fashionrec import options as opt
from fashionrec.train.params import add_train_arguments, config_from_args, explicit_settings


def cmd_train(args: argparse.Namespace) -> int:
    from fashionrec.train.main import run_train

    run_train(config_from_args(args))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from fashionrec.train.main import run_resume

    run_resume(args.checkpoint, explicit_settings(args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train FashionVLP on FashionIQ-layout data",
        usage="%(prog)s --path-file DIR --path-folder DIR [options]",
    )
    add_train_arguments(train, resume=False)
    train.set_defaults(func=cmd_train)

    resume = sub.add_parser(
        "resume",
        help="continue training exactly from a checkpoint (file, or folder: newest valid one)",
        description="Continue a run exactly. Flags left out keep the checkpoint's values.",
        usage="%(prog)s --checkpoint PATH --path-file DIR --path-folder DIR [options]",
    )
    checkpoint = opt.CHECKPOINT.with_help("checkpoint file, or a folder of checkpoints (its newest valid one)")
    replace(checkpoint, type=opt.checkpoint_file_or_folder("checkpoint")).add_to(resume, required=True)
    add_train_arguments(resume, resume=True)
    resume.set_defaults(func=cmd_resume)
