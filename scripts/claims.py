#!/usr/bin/env python3
"""List every promise made in README.md and docs/*.md with the test that checks it; fail when one has none.

A promise is marked in the Markdown source, right after the sentence, with an HTML comment (invisible
once rendered):

    Resumed runs are bit-identical. <!-- claim: tests/train/test_resume.py::test_stop_after_k -->

Several tests are separated by commas; `claim: none (why)` marks a promise that no test on these
machines can check (a GPU, a Qdrant server), which the doc must say next to it. The check fails when a
marked claim names no test, or names a test file or function that does not exist.

    python scripts/claims.py          # list the promises and their tests
    python scripts/claims.py --check  # the same, exit 1 on any promise without a real test
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"<!--\s*claim:\s*(?P<tests>.*?)\s*-->")
UNTESTABLE = re.compile(r"^none\s*\((?P<why>.+)\)$")


@dataclass(frozen=True)
class Claim:
    doc: Path
    line: int
    sentence: str
    tests: tuple[str, ...]
    untestable: str | None  # the reason, for `claim: none (why)`


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def sentence_before(text: str) -> str:
    """The sentence a tag follows: the text before it on its line, back to the previous full stop."""
    before = TAG.sub("", text).strip().rstrip("|").strip()
    parts = re.split(r"(?<=[.!?])\s+", before)
    return (parts[-1] if parts else before)[:160]


def claims_in(doc: Path) -> list[Claim]:
    found = []
    for number, line in enumerate(doc.read_text().splitlines(), start=1):
        for match in TAG.finditer(line):
            spec = match["tests"].strip()
            why = UNTESTABLE.match(spec)
            tests = () if why or not spec else tuple(t.strip() for t in spec.split(",") if t.strip())
            found.append(Claim(doc, number, sentence_before(line[: match.start()]), tests, why and why["why"]))
    return found


def test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def problems(claim: Claim, root: Path) -> list[str]:
    if claim.untestable:
        return []
    if not claim.tests:
        return ["no test named"]
    out = []
    for test in claim.tests:
        file, _, function = test.partition("::")
        path = root / file
        if not path.is_file():
            out.append(f"{file}: no such test file")
        elif function and function.split("[")[0] not in test_functions(path):
            out.append(f"{test}: no such test")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a promise has no real test")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    claims = [c for doc in documents(args.root) for c in claims_in(doc)]
    failed = 0
    for claim in claims:
        where = f"{claim.doc.relative_to(args.root)}:{claim.line}"
        issues = problems(claim, args.root)
        failed += bool(issues)
        checked_by = f"not testable here: {claim.untestable}" if claim.untestable else ", ".join(claim.tests)
        print(f"{'FAIL' if issues else 'ok  '} {where}: {claim.sentence}\n       {checked_by or '-'}")
        for issue in issues:
            print(f"       ! {issue}")
    print(f"{len(claims)} promises, {failed} without a real test")
    return 1 if args.check and (failed or not claims) else 0


if __name__ == "__main__":
    sys.exit(main())
