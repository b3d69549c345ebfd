"""The `fashionrec` command: one sub-command per job, user errors as one line and exit code 2.

Building the parser and parsing import no torch or transformers: each command module imports its heavy
modules inside its command function, and every value the command line can check (paths, ports, numbers)
is checked by the option's `type` (`fashionrec.options`), so a mistake is reported in a fraction of a
second. See "Command line" in docs/ARCHITECTURE.md."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fashionrec.cli.parser import CommandParser
from fashionrec.errors import UserError

# Each module here adds its sub-commands with `register(subparsers)` and sets `func` on them.
COMMAND_MODULES = (
    "fashionrec.cli.data",
    "fashionrec.cli.train",
    "fashionrec.cli.evaluate",
    "fashionrec.cli.index",
    "fashionrec.cli.catalog",
    "fashionrec.cli.demo",
    "fashionrec.cli.convert",
    "fashionrec.cli.init",
)


def package_version() -> str:
    try:
        return version("fashionrec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> CommandParser:
    import importlib

    parser = CommandParser(
        prog="fashionrec",
        description="Fashion recommendation with text feedback: data, training, evaluation, a catalog index and a "
        "web service. `fashionrec COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fashionrec {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help or --version (0), or a usage error already printed as one line (2)
        return e.code if isinstance(e.code, int) else 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or missing folder, a file where a folder should be
        if e.errno is None:
            raise
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def describe_os_error(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    if e.errno == errno.EEXIST and e.filename and Path(e.filename).is_file():
        return f"{e.filename} is a file, not a folder"
    if e.errno == errno.ENOTDIR and e.filename:
        return f"cannot use {e.filename}: a folder on its path is a file"
    return f"cannot use{where}: {e.strerror} (errno {e.errno})"
