"""Every mistake the command line and the file system reveal is one line on stderr, exit code 2, before
torch or transformers is imported (so it comes in a fraction of a second, not after ten seconds of imports).

The command lines run in one fresh interpreter that imported only the CLI, each in a fork of it
(tests/cli/argv_runner.py), so each reports what it imported itself."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashionrec.cli.main import build_parser

RUNNER = Path(__file__).with_name("argv_runner.py")
ROOT = Path(__file__).resolve().parents[2]
MISSING = "{tmp}/missing"
# (command line, what the one error line says); {dir} is an existing folder, {file} an existing file.
FOLDERS = ["--path-file", "{dir}", "--path-folder", "{dir}"]
RECOMMEND = ["recommend", "--checkpoint", "{file}", "--item", "a", "--text", "x"]
CASES = {
    "bad port": (["serve", "--checkpoint", "{file}", "--index", "{dir}", "--port", "99999"], "--port: must be a port"),
    "negative port": (["serve", "--checkpoint", "{file}", "--index", "{dir}", "--port", "-1"], "got -1"),
    "port in use": (
        ["serve", "--checkpoint", "{file}", "--index", "{dir}", "--port", "{port}"],
        "port {port} on 127.0.0.1 is in use by another program",
    ),
    "host not of this machine": (
        ["serve", "--checkpoint", "{file}", "--index", "{dir}", "--host", "203.0.113.7", "--port", "0"],
        "--host 203.0.113.7 is not an address of this machine",
    ),
    "demo port in use": (["demo", "--out", "{tmp}/demo", "--serve", "--port", "{port}"], "is in use"),
    "negative threshold": (
        ["index", "--checkpoint", "{file}", "--images", "{dir}", "--out", "{tmp}/i", "--approx-threshold", "-1"],
        "--approx-threshold: must be 0 or more, got -1",
    ),
    "zero batch": (["train", *FOLDERS, "--batch", "0"], "--batch: must be at least 1, got 0"),
    "negative epochs": (["train", *FOLDERS, "--epochs", "-2"], "--epochs: must be at least 1, got -2"),
    "zero accumulation": (["resume", "--checkpoint", "{file}", *FOLDERS, "--gradient-accumulation", "0"], "got 0"),
    "zero validation queries": (["train", *FOLDERS, "--fast-validation-queries", "0"], "got 0"),
    "negative save interval": (["train", *FOLDERS, "--save-every-steps", "-5"], "must be 0 or more, got -5"),
    "negative workers": (["evaluate", "--checkpoint", "{file}", *FOLDERS, "--num-workers", "-1"], "got -1"),
    "zero results": (
        ["recommend", "--checkpoint", "{file}", "--index", "{dir}", "--item", "a", "--text", "x", "-k", "0"],
        "-k: k must be an integer from 1 to 100, got 0",
    ),
    "too many results": (
        ["recommend", "--checkpoint", "{file}", "--index", "{dir}", "--item", "a", "--text", "x", "-k", "101"],
        "got 101",
    ),
    "blank text": (
        ["recommend", "--checkpoint", "{file}", "--index", "{dir}", "--item", "a", "--text", "  "],
        "the feedback text is empty",
    ),
    "init over an existing folder": (["init", "--model", "m", "{dir}"], "already exists; choose another OUT"),
    "init with an unknown resize rule": (["init", "--resize", "stretch", "{tmp}/m"], "--resize: invalid choice"),
    "zero demo images": (["make-demo-data", "{tmp}/d", "--images", "0"], "--images: must be at least 1, got 0"),
    "zero demo epochs": (["demo", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    "missing index (recommend)": (
        ["recommend", "--checkpoint", "{file}", "--index", MISSING, "--item", "a", "--text", "x"],
        "--index: index folder not found: {tmp}/missing",
    ),
    "missing index (serve)": (
        ["serve", "--checkpoint", "{file}", "--index", MISSING],
        "--index: index folder not found: {tmp}/missing",
    ),
    "missing catalog images folder": (
        ["index", "--checkpoint", "{file}", "--images", MISSING, "--out", "{tmp}/i"],
        "--images: images folder not found: {tmp}/missing",
    ),
    "missing training images folder": (
        ["train", "--path-file", "{dir}", "--path-folder", MISSING],
        "--path-folder: images folder not found: {tmp}/missing",
    ),
    "missing reference image": (
        ["recommend", "--checkpoint", "{file}", "--index", "{dir}", "--image", MISSING, "--text", "x"],
        "--image: reference image not found: {tmp}/missing",
    ),
    "missing checkpoint (evaluate)": (
        ["evaluate", "--checkpoint", MISSING, *FOLDERS],
        "--checkpoint: checkpoint not found: {tmp}/missing",
    ),
    "missing checkpoint (resume)": (
        ["resume", "--checkpoint", MISSING, *FOLDERS],
        "--checkpoint: checkpoint not found: {tmp}/missing",
    ),
    "checkpoint folder without checkpoints": (
        ["resume", "--checkpoint", "{dir}", *FOLDERS],
        "--checkpoint: no checkpoint files (*.pt) in {dir}",
    ),
    "index without images or an export": (
        ["index", "--checkpoint", "{file}", "--out", "{tmp}/i"],
        "the following arguments are required: --images (or --from-mongo-export FILE, with which it is optional)",
    ),
    "missing mongoexport file": (
        ["index", "--checkpoint", "{file}", "--from-mongo-export", MISSING, "--out", "{tmp}/i"],
        "--from-mongo-export: mongoexport file not found: {tmp}/missing",
    ),
    "mongoexport file is a folder": (
        ["index", "--checkpoint", "{file}", "--from-mongo-export", "{dir}", "--out", "{tmp}/i"],
        "--from-mongo-export: mongoexport file {dir} is a folder, not a file",
    ),
    "missing images folder of an export": (
        ["index", "--checkpoint", "{file}", "--from-mongo-export", "{export}", "--images", MISSING, "--out", "{tmp}/i"],
        "--images: images folder not found: {tmp}/missing",
    ),
    "not a mongoexport file": (
        ["index", "--checkpoint", "{file}", "--from-mongo-export", "{file}", "--out", "{tmp}/i"],
        "{file} starts with 'a': not a mongoexport file",
    ),
    "a name twice in a mongoexport file": (
        ["index", "--checkpoint", "{file}", "--from-mongo-export", "{export}", "--out", "{tmp}/i"],
        "{export}, line 2 ('a.jpg'): the name is also at line 1",
    ),
    "missing checkpoint (index)": (
        ["index", "--checkpoint", MISSING, "--images", "{dir}", "--out", "{tmp}/i"],
        "--checkpoint: checkpoint not found: {tmp}/missing",
    ),
    "missing checkpoint (convert)": (["convert-original", MISSING, "{tmp}/out.pt"], "checkpoint not found"),
    "missing checkpoint (export)": (["export-original", MISSING, "{tmp}/out.pt"], "CKPT: checkpoint not found"),
    "export over a file": (["export-original", "{file}", "{file}"], "{file} already exists; choose another OUT"),
    "missing backbone weights": (["train", *FOLDERS, "--backbone-weights", MISSING], "backbone weights file not"),
    "annotations folder is a file": (
        ["train", "--path-file", "{file}", "--path-folder", "{dir}"],
        "--path-file: annotations folder {file} is a file, not a folder",
    ),
    "output folder is a file": (
        ["train", *FOLDERS, "--output-dir", "{file}"],
        "--output-dir: output folder {file} is a file, not a folder",
    ),
    "output folder under a file": (
        ["train", *FOLDERS, "--output-dir", "{file}/run"],
        "output folder {file}/run cannot be made: {file} is a file, not a folder",
    ),
    "lr negative, spaced": (["train", *FOLDERS, "--lr", "-1e-3"], "--lr: must be a finite number above 0, got -1e-3"),
    "lr negative, joined": (["train", *FOLDERS, "--lr=-1e-3"], "--lr: must be a finite number above 0, got -1e-3"),
    "lr nan": (["train", *FOLDERS, "--lr", "nan"], "--lr: must be a finite number, got nan"),
    "lr nan on resume": (["resume", "--checkpoint", "{file}", *FOLDERS, "--lr", "nan"], "got nan"),
    "unknown catalog URL scheme": (
        ["serve", "--checkpoint", "{file}", "--index", "mysql://shop:secret@db/x"],
        "--index: no catalog store takes 'mysql://shop:***@db/x': give a folder, or a URL of: postgresql://",
    ),
    "database URL with a bad port": (
        ["index", "--checkpoint", "{file}", "--images", "{dir}", "--out", "postgresql://shop:secret@db:port/x"],
        "--out: invalid catalog URL 'postgresql://shop:***@db:port/x'",
    ),
    "bad catalog name": (
        [*RECOMMEND, "--index", "postgresql://db/x", "--catalog-name", "Shop-1"],
        "--catalog-name: invalid catalog name 'Shop-1'",
    ),
    "catalog name for a folder": (
        [*RECOMMEND, "--index", "{dir}", "--catalog-name", "shop"],
        "--catalog-name names a catalog in a database, and --index {dir} is a folder",
    ),
    "index and database folder": (
        ["catalog", "remove", "--id", "a", "--index", "{dir}", "--database-dir", "{tmp}/db"],
        "give either --index or --database-dir, not both",
    ),
    "database folder is a file": (
        [*RECOMMEND, "--database-dir", "{file}"],
        "--database-dir: database folder {file} is a file, not a folder",
    ),
    "no catalog at all": (
        ["serve", "--checkpoint", "{file}", "--port", "0"],
        "give --index (an index folder or a database URL), --database-dir DIR, or set FASHIONREC_DATABASE_URL",
    ),
    "no output catalog": (
        ["index", "--checkpoint", "{file}", "--images", "{dir}"],
        "give --out (an index folder or a database URL), --database-dir DIR",
    ),
    "unknown flag": (["train", *FOLDERS, "--lr-max", "1"], "unrecognized arguments: --lr-max 1"),
    "required flag left out": (
        ["train", "--path-file", "{dir}"],
        "the following arguments are required: --path-folder",
    ),
}


@pytest.fixture(scope="module")
def port_in_use() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, port_in_use: int) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("fast_errors")
    (tmp / "folder").mkdir()
    (tmp / "notes.txt").write_text("a file the user wrote")
    (tmp / "export.json").write_text('{"name": "a.jpg", "features": [1.0]}\n' * 2)
    return {
        "tmp": str(tmp),
        "dir": str(tmp / "folder"),
        "file": str(tmp / "notes.txt"),
        "export": str(tmp / "export.json"),
        "port": str(port_in_use),
    }


def run_all(argvs: list[list[str]]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("FASHIONREC_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, str(RUNNER)], input=json.dumps(argvs), capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["at_start"] == []  # building the parser of every command imports neither
    return report


@pytest.fixture(scope="module")
def outcomes(places: dict[str, str]) -> dict[str, dict]:
    argvs = [[arg.format(**places) for arg in argv] for argv, _ in CASES.values()]
    return dict(zip(CASES, run_all(argvs)["results"], strict=True))


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_is_one_line_exit_2_before_heavy_imports(case: str, outcomes: dict, places: dict) -> None:
    outcome, expected = outcomes[case], CASES[case][1].format(**places)
    assert outcome["code"] == 2, outcome
    assert outcome["stderr"].startswith("error: ") and outcome["stderr"].count("\n") == 1, outcome["stderr"]
    assert expected in outcome["stderr"]
    assert outcome["heavy"] == [], f"{case}: imported {outcome['heavy']} before the error"
    assert "secret" not in outcome["stderr"]


def test_help_of_every_command_imports_nothing_heavy() -> None:
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    results = run_all([["--help"], ["--version"], *([name, "--help"] for name in commands)])["results"]
    assert all(r["code"] == 0 and r["heavy"] == [] for r in results), results


def test_the_real_entry_point_answers_in_one_line(places: dict[str, str]) -> None:
    """`python -m fashionrec` as a user runs it: stderr is the one line, the exit status is 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    argv = ["train", "--path-file", places["dir"], "--path-folder", places["dir"], "--lr", "-1e-3"]
    done = subprocess.run([sys.executable, "-m", "fashionrec", *argv], capture_output=True, text=True, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: argument --lr: must be a finite number above 0, got -1e-3\n"
