"""The `fashionrec` command: one sub-command per job, user errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fashionrec.errors import UserError

# Each module here adds its sub-commands with `register(subparsers)` and sets `func` on them.
COMMAND_MODULES = (
    "fashionrec.cli.data",
    "fashionrec.cli.train",
    "fashionrec.cli.evaluate",
    "fashionrec.cli.index",
    "fashionrec.cli.demo",
    "fashionrec.cli.convert",
    "fashionrec.cli.init",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="fashionrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or missing folder, a file where a folder should be
        if e.errno is None:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror} (errno {e.errno})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
