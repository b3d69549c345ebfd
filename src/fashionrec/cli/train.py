"""`fashionrec train` and `fashionrec resume` (also `python train.py` / `python resume_training.py`)."""

from __future__ import annotations

import argparse

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
    train = sub.add_parser("train", help="train FashionVLP on FashionIQ-layout data")
    add_train_arguments(train, resume=False)
    train.set_defaults(func=cmd_train)

    resume = sub.add_parser(
        "resume", help="continue training exactly from a checkpoint (file, or folder: newest valid one)"
    )
    resume.add_argument("--checkpoint", required=True, help="checkpoint file, or a folder of checkpoints")
    add_train_arguments(resume, resume=True)
    resume.set_defaults(func=cmd_resume)
