#!/usr/bin/env python3
"""Write docs/cli.md, the reference of every command and flag, from the parsers themselves.

    python scripts/cli_reference.py           # rewrite docs/cli.md
    python scripts/cli_reference.py --check   # exit 1 when docs/cli.md is not what the parsers say

tests/cli/test_reference.py runs the check, so a flag added without regenerating the file fails the suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fashionrec.cli.main import build_parser  # noqa: E402

OUT = ROOT / "docs" / "cli.md"
HEADER = """\
# Command-line reference

Every command and flag of `fashionrec`, generated from the parsers by `python scripts/cli_reference.py`
(do not edit by hand: `tests/cli/test_reference.py` fails when this file and the parsers disagree).
`fashionrec COMMAND --help` prints the same for one command; `fashionrec --version` prints the version.
What the commands are for: [README.md](../README.md) and the guides in this folder.

A mistake on the command line (a missing file or folder, a value out of range, a port that is not a port)
is one line, `error: ...`, with exit code 2, before anything heavy loads.
"""


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def cell(text: str) -> str:
    """Table-cell text: a pipe would end the cell, and <id> would read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def section(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    formatter = parser._get_formatter()
    lines = [f"## `fashionrec {name}`", "", parser.description or summary[0].upper() + summary[1:] + "."]
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines += ["", "```", " ".join(usage.split()), "```"]
    old = []
    for group in parser._action_groups:
        shown = [a for a in group._group_actions if a.help != argparse.SUPPRESS and a.dest != "help"]
        old += [a for a in group._group_actions if a.help == argparse.SUPPRESS]
        if not shown:
            continue
        lines += ["", f"**{group.title}**", "", "| flag | meaning |", "|---|---|"]
        for action in shown:
            flag = formatter._format_action_invocation(action)
            meaning = formatter._expand_help(action) if action.help else ""
            lines.append(f"| `{cell(flag)}` | {cell(meaning)} |")
    if old:
        spellings = ", ".join(f"`{s}` (now `{a.current}`)" for a in old for s in a.option_strings)
        lines += ["", f"Old spellings, still accepted with a note: {spellings}."]
    return lines + [""]


def render() -> str:
    parser = build_parser()
    summaries = helps(parser)
    lines = [HEADER]
    for name, sub in commands(parser).items():
        lines += section(name, sub, summaries[name])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
