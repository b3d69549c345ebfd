"""README.md and docs/*.md point only inside the repository, and docs/resume.md lists exactly the settings a
resume may change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fashionrec.train.params import CHANGEABLE, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A path from the root of a file system where one machine keeps its files (home folders, data and scratch
# mounts, local installs), or a Windows drive. URLs, HTTP routes, /proc, /sys and /dev, and where a distribution
# installs a program (/usr/bin/chromium) are not such places.
ABSOLUTE = re.compile(
    r"(?<![\w.~$})/:-])/(?:home|root|tmp|work|mnt|media|opt|srv|usr/local|var|data|scratch|Users)/\S*"
    r"|(?<![\w])[A-Za-z]:\\\S*"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
UP = re.compile(r"(?<![\w.])\.\./\S*")


def places_outside(doc: Path, root: Path) -> list[str]:
    """Absolute paths, links that lead out of `root`, and other ../ paths (commands run from the repository
    root, so ../ leaves it)."""
    text = doc.read_text()
    found = ABSOLUTE.findall(text)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:|#", target):  # a URL or an anchor
            continue
        where = (doc.parent / target.split("#")[0]).resolve()
        if not where.is_relative_to(root.resolve()):
            found.append(target)
    found += UP.findall(LINK.sub("]()", text))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_doc_names_a_place_outside_the_repository(doc: Path) -> None:
    assert places_outside(doc, ROOT) == []


def test_the_check_finds_absolute_and_outside_paths(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "x.md"
    doc.write_text(
        "Data in /work/shared/data/fashioniq and `../shared/data`; see [up](../../elsewhere.md),\n"
        "[in](../README.md), [web](https://example.org/a/b), the route `/items/{id}/image`, /proc/PID/status,\n"
        "`~/.cache/huggingface`, C:\\Users\\me.\n"
    )
    assert places_outside(doc, tmp_path) == [
        "/work/shared/data/fashioniq",
        "C:\\Users\\me.",
        "../../elsewhere.md",
        "../shared/data`;",
    ]


def resume_policy_rows() -> list[tuple[set[str], str]]:
    """(flags, policy) of each row of docs/resume.md's table of settings on resume."""
    text = (ROOT / "docs" / "resume.md").read_text()
    table = text.split("## Changing settings on resume", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    return [(set(re.findall(r"`(--[a-z-]+)`", flags)), policy.strip()) for flags, policy in rows]


def test_the_resume_table_lists_exactly_the_settings_and_which_may_change() -> None:
    flags = {f.name: f.metadata["option"].flag for f in TrainConfig.__dataclass_fields__.values()}
    rows = resume_policy_rows()
    fixed = set().union(*(row for row, policy in rows if policy.startswith("fixed")))
    changeable = set().union(*(row for row, policy in rows if not policy.startswith("fixed")))
    assert fixed == {flag for name, flag in flags.items() if name not in CHANGEABLE}
    assert changeable == {flags[name] for name in CHANGEABLE}
