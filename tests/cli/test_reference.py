"""docs/cli.md documents every flag of every command, as the parsers define them today."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from fashionrec.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
cli_reference = importlib.util.module_from_spec(spec)
sys.modules["cli_reference"] = cli_reference
spec.loader.exec_module(cli_reference)

COMMANDS = cli_reference.commands(build_parser())


def documented(command: str) -> str:
    """The section of docs/cli.md about one command."""
    text = (ROOT / "docs" / "cli.md").read_text()
    start = text.index(f"## `fashionrec {command}`")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def documented_flags(section: str) -> list[str]:
    """Flags as the section's tables list them (first cell), and the old spellings it names."""
    flags = []
    for line in section.splitlines():
        if line.startswith("| `"):
            invocation = line.split("`")[1].replace("\\|", "|")
            flags += [part.split(" ")[0] for part in invocation.split(", ")]
        elif line.startswith("Old spellings"):
            flags += re.findall(r"`(\S+)` \(now", line)
    return flags


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_every_command_is_in_the_reference_once(command: str) -> None:
    flags = [
        flag
        for action in COMMANDS[command]._actions
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings or [action.metavar or action.dest]
    ]
    assert sorted(documented_flags(documented(command))) == sorted(flags)


def test_the_reference_is_what_the_parsers_say(capsys: pytest.CaptureFixture) -> None:
    assert cli_reference.main(["--check"]) == 0, capsys.readouterr().out
