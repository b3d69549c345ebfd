"""The command line with a catalog in PostgreSQL: `fashionrec index --out postgresql://...` and `recommend`
give what an index folder gives, from the same images and checkpoint; updates are incremental; another
checkpoint is refused; the catalog comes from --index, --database-dir or FASHIONREC_DATABASE_URL; and an
embedded server started by --database-dir stops when the last fashionrec process using it ends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pg_fixtures import PREFIX, data_root, require_postgres
from PIL import Image
from rec_fixtures import FakeEncoder, solid_images, tiny_checkpoint

from fashionrec.cli.main import main
from fashionrec.index import build_index
from fashionrec.options import DATABASE_URL_ENV

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = (
    "id,category,title,price,currency,url,colour\n"
    "D000001,dress|sale,Red dress,19.90,EUR,https://shop.example/d1,red\n"
    "D000002,dress,Blue dress,5,,,\n"
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pg_cli")
    (root / "products.csv").write_text(PRODUCTS)
    return {"root": root, "images": shutil.copytree(demo_dir, root / "images"), "cache": root / "cache"}


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def query(tiny_ckpt: Path, where: list[str], capsys, *extra: str) -> list[dict]:
    argv = ["recommend", "--checkpoint", str(tiny_ckpt), *where, "--item", "D000003", "--text", "is red"]
    code, out, err = run([*argv, "-k", "10", "--json", "--device", "cpu", *extra], capsys)
    assert code == 0, err
    return json.loads(out)["results"]


@pytest.mark.slow  # four builds and six model loads, about 15 s here
def test_index_into_a_database_then_recommend_as_from_a_folder(
    work, tiny_ckpt: Path, pg_url: str, catalog_name: str, capsys: pytest.CaptureFixture
) -> None:
    build = ["index", "--checkpoint", str(tiny_ckpt), "--images", str(work["images"]), "--device", "cpu"]
    build += ["--cache-dir", str(work["cache"]), "--products", str(work["root"] / "products.csv")]
    folder = work["root"] / "index"
    assert run([*build, "--out", str(folder)], capsys)[0] == 0
    database = ["--out", pg_url, "--catalog-name", catalog_name]
    code, out, _ = run([*build, *database], capsys)
    assert code == 0 and "48 items (48 encoded" in out and f"backend postgres, catalog {catalog_name}" in out
    assert "dress 2, sale 1, unknown 46" in out

    from_folder = query(tiny_ckpt, ["--index", str(folder)], capsys)
    from_database = query(tiny_ckpt, ["--index", pg_url, "--catalog-name", catalog_name], capsys)
    assert [r["id"] for r in from_database] == [r["id"] for r in from_folder]
    for a, b in zip(from_database, from_folder, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["path"] is None and Path(b["path"]).is_file()  # the image is in the database, not a file
        assert {**a, "score": 0, "path": 0} == {**b, "score": 0, "path": 0}  # categories and product fields
    in_sale = query(tiny_ckpt, ["--index", pg_url, "--catalog-name", catalog_name], capsys, "--category", "sale")
    assert [(r["id"], r["title"], r["price"], r["url"]) for r in in_sale] == [
        ("D000001", "Red dress", "19.90", "https://shop.example/d1")
    ]

    # An update encodes what changed only, and answers as the folder index updated alike does.
    Image.new("RGB", (64, 64), (200, 10, 30)).save(work["images"] / "D000002.png")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(work["images"] / "new.png")
    (work["images"] / "T000004.png").unlink()
    code, out, _ = run([*build, *database], capsys)
    assert code == 0 and "48 items (2 encoded, 46 unchanged, 1 removed)" in out
    assert run([*build, "--out", str(folder)], capsys)[0] == 0
    after = query(tiny_ckpt, ["--index", pg_url, "--catalog-name", catalog_name], capsys)
    assert [r["id"] for r in after] == [r["id"] for r in query(tiny_ckpt, ["--index", str(folder)], capsys)]


def test_another_checkpoint_is_refused_in_one_line(
    work, tiny_ckpt: Path, pg_url: str, catalog_name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = solid_images(tmp_path / "images", 6, size=16)
    build = ["index", "--images", str(images), "--out", pg_url, "--catalog-name", catalog_name, "--device", "cpu"]
    build += ["--cache-dir", str(work["cache"])]
    assert run([*build, "--checkpoint", str(tiny_ckpt)], capsys)[0] == 0
    other = tiny_checkpoint(tmp_path / "other", seed=1)
    code, out, err = run([*build, "--checkpoint", str(other)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: {pg_url} (catalog {catalog_name}) was built with another checkpoint")
    assert "pass --rebuild" in err
    argv = ["recommend", "--checkpoint", str(other), "--index", pg_url, "--catalog-name", catalog_name]
    code, _, err = run([*argv, "--item", "c001", "--text", "x", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "was built with checkpoint" in err and "not this one" in err
    code, out, _ = run([*build, "--checkpoint", str(other), "--rebuild"], capsys)
    assert code == 0 and "6 items (6 encoded" in out


def test_the_catalog_comes_from_the_flag_then_the_environment_and_no_password_is_shown(
    pg_url: str, catalog_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    images = solid_images(tmp_path / "images", 4, size=8)
    build_index(Path("unused"), images, pg_url, encoder=FakeEncoder(), catalog=catalog_name)
    build_index(Path("unused"), images, tmp_path / "index", encoder=FakeEncoder())
    with_password = pg_url.replace("postgres:@", "postgres:s3cret-pw@")  # the embedded server trusts anyone
    monkeypatch.setenv(DATABASE_URL_ENV, with_password)
    code, out, err = run(["catalog", "remove", "--id", "c000", "--catalog-name", catalog_name], capsys)
    assert code == 0 and out.startswith("removed c000 in postgresql://postgres:***@") and "(3 items)" in out
    code, out, _ = run(["catalog", "remove", "--id", "c001", "--index", str(tmp_path / "index")], capsys)
    assert code == 0 and out == f"removed c001 in {tmp_path / 'index'} (3 items)\n"  # the flag comes first
    code, _, err = run(["catalog", "remove", "--id", "c000", "--catalog-name", catalog_name], capsys)
    assert code == 2 and err == "error: no catalog item with id 'c000'\n"
    code, _, err = run(["catalog", "remove", "--id", "c001", "--catalog-name", "nothing_here"], capsys)
    assert code == 2 and "catalog 'nothing_here'" in err and "has not been built yet" in err
    assert "s3cret" not in out + err
    folder = str(tmp_path / "index")
    monkeypatch.setenv(DATABASE_URL_ENV, folder)
    code, _, err = run(["catalog", "remove", "--id", "c002"], capsys)
    assert code == 2 and err == f"error: {DATABASE_URL_ENV} must be a database URL (postgresql://...), got {folder!r}\n"


def postmaster_running(data_dir: Path) -> bool:
    from fashionrec.index.postgres.embedded import postmaster

    return postmaster(data_dir) is not None


@pytest.mark.slow  # starts fashionrec processes, each with an embedded server of its own or joined
def test_a_database_dir_server_stops_when_the_last_fashionrec_process_using_it_ends(tmp_path: Path, require) -> None:
    require_postgres(require)
    from fashionrec.index.postgres.embedded import EmbeddedServer

    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=data_root(tmp_path)))
    data = folder / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop(DATABASE_URL_ENV, None)

    def catalog(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "fashionrec", "catalog", *argv, "--database-dir", str(data)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    holder = EmbeddedServer(data)
    try:
        build_index(Path("unused"), solid_images(tmp_path / "images", 4, size=8), holder.start(), encoder=FakeEncoder())
        # Joined while this process holds the server: it keeps running after the command.
        done = catalog("remove", "--id", "c000")
        assert done.returncode == 0 and "(3 items)" in done.stdout, done.stderr
        assert postmaster_running(data)
        holder.release()  # the last user leaves: the server stops
        assert not postmaster_running(data)
        # Started by the command itself, and stopped when it ends.
        done = catalog("remove", "--id", "c001")
        assert done.returncode == 0 and "(2 items)" in done.stdout, done.stderr
        assert not postmaster_running(data)
        # Ended by SIGTERM (as by a service manager): stopped too.
        command = [sys.executable, "-c", SERVE_UNTIL_TERMINATED, str(data)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().startswith("postgresql://")
        assert postmaster_running(data)
        process.terminate()
        assert process.wait(60) == 143
        deadline = time.monotonic() + 10
        while postmaster_running(data) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not postmaster_running(data)
    finally:
        holder.stop()
        shutil.rmtree(folder, ignore_errors=True)


# What `serve --database-dir` does with its server, without a model: start it, then wait for a signal.
SERVE_UNTIL_TERMINATED = """
import sys, time
from pathlib import Path
from fashionrec.index.postgres.embedded import start
print(start(Path(sys.argv[1])), flush=True)
time.sleep(600)
"""
