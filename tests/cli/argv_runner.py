"""Runs `fashionrec` command lines for tests/cli/test_fast_errors.py in one fresh interpreter that has
imported only the CLI: each command line runs in a fork of it, so each reports exactly what it imported
itself, at the cost of one interpreter start for all of them.

stdin: a JSON list of argv lists. stdout: JSON {"at_start": [...], "results": [{"code", "stderr", "heavy"}]}:
"at_start" lists the modules of HEAVY imported by building the parser, "heavy" those imported by the end of
each command."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

HEAVY = ("torch", "transformers")

from fashionrec.cli.main import build_parser, main  # noqa: E402


def heavy_modules() -> list[str]:
    return sorted(name for name in HEAVY if name in sys.modules)


def run_in_fork(argv: list[str]) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the command, report, leave without running any cleanup of the parent's
        os.close(read_end)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code: int | str = main(argv)
            except BaseException as e:  # a traceback is what the tests look for; report it as text
                code = f"raised {type(e).__name__}: {e}"
        with os.fdopen(write_end, "w") as f:
            json.dump({"code": code, "stderr": err.getvalue(), "heavy": heavy_modules()}, f)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        report = f.read()
    os.waitpid(pid, 0)
    return json.loads(report)


if __name__ == "__main__":
    build_parser()  # imports every command module once, before the forks
    at_start = heavy_modules()
    print(json.dumps({"at_start": at_start, "results": [run_in_fork(argv) for argv in json.load(sys.stdin)]}))
