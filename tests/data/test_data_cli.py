"""`fashionrec dataset-info` and `make-demo-data`, and the dataset flags other commands share."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fashionrec.cli.main import main
from fashionrec.data.fashioniq import load_split
from fashionrec.data.images import load_split_with_images
from fashionrec.errors import UserError


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dataset_info_real_val_with_every_image(fashioniq: Path, tmp_path: Path, capsys) -> None:
    for s in load_split(fashioniq, "val").values():
        for i in s.gallery:  # dataset-info only looks for the files: empty ones will do
            (tmp_path / f"{i}.jpg").touch()
    code, out, _ = run(
        capsys, "dataset-info", "--path-file", str(fashioniq), "--path-folder", str(tmp_path),
        "--split", "val", "--json", "--no-decode-check",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {
        "dress": {"queries": 2017, "gallery": 3817, "missing_images": 0},
        "shirt": {"queries": 2038, "gallery": 6346, "missing_images": 0},
        "toptee": {"queries": 1961, "gallery": 5373, "missing_images": 0},
    }


def test_dataset_info_table_reports_missing_images(fashioniq: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "dataset-info", "--path-file", str(fashioniq), "--path-folder", str(tmp_path),
        "--split", "val", "--categories", "shirt",
    )  # fmt: skip
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["shirt", "2038", "6346", "6346", "0", "2.00", "(min", "2,", "max", "2)"] in rows
    assert not any(r and r[0] in ("dress", "toptee") for r in rows)


def test_dataset_info_on_demo_data(demo_data: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "dataset-info", "--path-file", str(demo_data), "--path-folder", str(demo_data / "images"),
        "--split", "train", "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    for name, row in report.items():
        queries = json.loads((demo_data / f"captions/cap.{name}.train.json").read_text())
        gallery = json.loads((demo_data / f"image_splits/split.{name}.train.json").read_text())
        assert row == {"queries": len(queries), "gallery": len(gallery), "missing_images": 0, "corrupt_images": 0}


def test_dataset_info_finds_images_that_do_not_decode(demo_data: Path, tmp_path: Path, capsys) -> None:
    images = Path(shutil.copytree(demo_data / "images", tmp_path / "images"))
    gallery = json.loads((demo_data / "image_splits/split.dress.val.json").read_text())
    truncated, garbage = images / f"{gallery[0]}.jpg", images / f"{gallery[1]}.jpg"  # .jpg comes before .png
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="JPEG")
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    garbage.write_bytes(b"\xff\xd8 not really a jpeg")
    args = ["dataset-info", "--path-file", str(demo_data), "--path-folder", str(images), "--split", "val"]
    code, out, err = run(capsys, *args, "--categories", "dress")
    assert code == 0
    assert "decoding images" in err  # the progress bar
    named = [line for line in err.splitlines() if line.startswith("corrupt: ")]
    assert sorted(line.split(": ")[1] for line in named) == sorted(
        f"cannot decode image {p}" for p in (truncated, garbage)
    )
    header, row = out.splitlines()[1:3]
    assert header.split()[:5] == ["category", "queries", "gallery", "missing", "corrupt"]
    queries = len(load_split(demo_data, "val")["dress"].triplets)
    assert row.split()[:5] == ["dress", str(queries), str(len(gallery)), "0", "2"]
    code, out, _ = run(capsys, *args, "--json")
    assert json.loads(out)["dress"]["corrupt_images"] == 2
    assert json.loads(out)["shirt"]["corrupt_images"] == 0
    code, out, err = run(capsys, *args, "--json", "--no-decode-check")
    assert "corrupt_images" not in json.loads(out)["dress"] and "decoding" not in err


def bad_annotations(tmp_path: Path) -> Path:
    root = tmp_path / "ann"
    (root / "captions").mkdir(parents=True)
    (root / "image_splits").mkdir()
    (root / "captions/cap.dress.val.json").write_text('[{"candidate": "a",, }]')
    (root / "image_splits/split.dress.val.json").write_text('["a"]')
    return root


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-annotations", "annotations folder not found: {tmp}/missing"),
        ("no-images", "images folder not found: {tmp}/missing"),
        ("malformed", "{tmp}/ann/captions/cap.dress.val.json: malformed JSON at line 1, column 20"),
        ("unknown-category", "unknown category 'hats'"),
        ("missing-file", "file not found: {tmp}/ann/captions/cap.shirt.val.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, case: str, expected: str) -> None:
    root, images = bad_annotations(tmp_path), tmp_path
    categories = {"unknown-category": "dress,hats", "missing-file": "shirt"}.get(case, "dress")
    if case == "no-annotations":
        root = tmp_path / "missing"
    if case == "no-images":
        (root / "captions/cap.dress.val.json").write_text("[]")
        images = tmp_path / "missing"
    code, out, err = run(
        capsys, "dataset-info", "--path-file", str(root), "--path-folder", str(images),
        "--categories", categories,
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: ") and expected.format(tmp=tmp_path) in err


def test_make_demo_data_command(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "make-demo-data", str(tmp_path / "demo"), "--images", "30", "--seed", "3")
    assert code == 0 and f"--path-folder {tmp_path / 'demo/images'}" in out
    assert len(list((tmp_path / "demo/images").glob("*.png"))) == 30
    val = load_split(tmp_path / "demo", "val")
    assert [len(s.gallery) for s in val.values()] == [2, 2, 2]  # a quarter of 10, rounded


def test_make_demo_data_refuses_too_few_images(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "make-demo-data", str(tmp_path / "demo"), "--images", "2")
    assert code == 2 and err == "error: --images must be at least 6, got 2\n"


def test_missing_images_fail_unless_skipped(demo_data: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    val = load_split(demo_data, "val", ["shirt"])["shirt"]
    for i in val.gallery[1:]:
        (images / f"{i}.png").symlink_to(demo_data / f"images/{i}.png")
    gone = val.gallery[0]
    message = f"1 images of the val split are missing from {images} .first: {gone}\\); pass --skip-missing"
    with pytest.raises(UserError, match=message):
        load_split_with_images(demo_data, images, "val", ["shirt"])

    kept = load_split_with_images(demo_data, images, "val", ["shirt"], skip_missing=True)["shirt"]
    expected = [t for t in val.triplets if gone not in (t.candidate, t.target)]
    assert kept.triplets == expected and gone not in kept.gallery
    dropped = len(val.triplets) - len(expected)
    assert dropped > 0
    err = capsys.readouterr().err
    total = len(val.triplets)
    assert err == f"--skip-missing: dropped {dropped} of {total} val queries with missing images\n"
