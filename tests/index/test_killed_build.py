"""docs/serving.md: "a build killed half-way leaves the previous index working". A second build of a
changed catalog is SIGKILLed (no handler, no `finally` runs) while it encodes, and at the worst moment:
its new data files written and its new manifest written to a temp file, not yet renamed into place.
The previous index must open and answer exactly as before, and the next build must clear the leftovers."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import fashionrec
from fashionrec.index import Recommender, build_index
from fashionrec.index.folder_store import LOCK
from fashionrec.index.manifest import MANIFEST, load_manifest

pytestmark = pytest.mark.slow  # starts `fashionrec index` processes

# `fashionrec index`, killing itself (SIGKILL, as the kernel's OOM killer would) when it is about to
# rename its new manifest over the old one.
KILL_BEFORE_COMMIT = """
import os, signal, sys
from fashionrec.cli.main import main
rename = os.replace
def replace(src, dst, **kw):
    if os.path.basename(dst) == "manifest.json":
        os.kill(os.getpid(), signal.SIGKILL)
    rename(src, dst, **kw)
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


def answers(checkpoint: Path, index: Path, references: list[bytes]) -> list[list[tuple[str, float, tuple]]]:
    recommender = Recommender.open(checkpoint, index, device="cpu")
    try:
        return [
            [(m.id, m.score, m.categories) for m in recommender.recommend(image, "is red with long sleeves", 10)]
            for image in references
        ]
    finally:
        recommender.close()


def wait_for_output(process: subprocess.Popen, text: bytes, timeout: float = 180) -> bytes:
    """stderr of `process` until `text` appears in it (or the process ends)."""
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {seen[-2000:]!r}"
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("moment", ["while encoding", "before the manifest is renamed"])
def test_a_killed_build_leaves_the_previous_index_answering_as_before(
    moment: str, tiny_ckpt: Path, demo_dir: Path, tmp_path: Path
) -> None:
    images = shutil.copytree(demo_dir, tmp_path / "images")
    index, cache = tmp_path / "index", tmp_path / "cache"
    build_index(tiny_ckpt, images, index, cache_dir=cache, device="cpu")
    references = [(images / name).read_bytes() for name in ("D000001.png", "S000002.png", "T000003.png")]
    before = answers(tiny_ckpt, index, references)
    committed = {p.name: p.read_bytes() for p in index.iterdir()}

    for i, name in enumerate(("D000004.png", "S000005.png", "T000006.png")):  # changed files, and new ones
        Image.new("RGB", (64, 64), (30 * i, 200, 90)).save(images / name)
        Image.new("RGB", (64, 64), (200, 30 * i, 90)).save(images / f"new{i}.png")
    argv = ["index", "--checkpoint", str(tiny_ckpt), "--images", str(images), "--out", str(index)]
    argv += ["--cache-dir", str(cache), "--device", "cpu", "--rebuild", "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(fashionrec.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    if moment == "while encoding":
        command = [sys.executable, "-m", "fashionrec", *argv]
    else:
        command = [sys.executable, "-c", KILL_BEFORE_COMMIT, *argv]
    build = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if moment == "while encoding":
            wait_for_output(build, b"encoding catalog")
            build.send_signal(signal.SIGKILL)
        else:
            wait_for_output(build, b"\x00never printed", timeout=300)  # until it kills itself
        assert build.wait(60) == -signal.SIGKILL
    finally:
        if build.poll() is None:
            build.kill()
            build.wait(60)
        build.stderr.close()

    leftovers = {p.name for p in index.iterdir()} - set(committed)
    if moment == "before the manifest is renamed":  # the new build had written everything but its commit
        assert any(n.startswith("embeddings-") for n in leftovers), leftovers
        assert any(n.startswith(".manifest.json.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert all((index / name).read_bytes() == data for name, data in committed.items())
    assert answers(tiny_ckpt, index, references) == before

    # The next build commits the change, and clears what the killed one left behind.
    report = build_index(tiny_ckpt, images, index, cache_dir=cache, device="cpu")
    assert (report.items, report.encoded) == (51, 6)  # 48 + 3 new; 3 changed
    manifest = load_manifest(index)
    files = sorted([MANIFEST, LOCK, manifest.embeddings, manifest.backend["file"]])
    assert sorted(p.name for p in index.iterdir()) == files
