"""Reading mongoexport files of the original system's catalog: JSON lines and arrays, relaxed and canonical
extended JSON, read a block at a time; every unusable document one line naming it, from the command line
before a model loads, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashionrec.cli.main import main
from fashionrec.index import mongo_export
from fashionrec.index.mongo_export import read_mongo_export

RAW = {"dress/B001.jpg": [3.0, 4.0, 0.0], "B002.png": [0.5, -0.5, 0.5], "shirt/B003.bmp": [-2.0, 0.0, 1e-3]}
OID = {"$oid": "65f1c2a9e4b0a1b2c3d4e5f6"}


def canonical(value: float) -> dict:
    """How mongoexport's canonical mode writes a double (an integral one as an int32 or int64 here too)."""
    if value == int(value) and value >= 0:
        return {"$numberInt": str(int(value))} if value < 2 else {"$numberLong": str(int(value))}
    return {"$numberDouble": repr(value)}


def documents(numbers=lambda v: v) -> list[dict]:
    return [{"_id": OID, "name": name, "features": [numbers(v) for v in raw]} for name, raw in RAW.items()]


def lines(docs: list[dict]) -> str:
    return "".join(json.dumps(doc) + "\n" for doc in docs)


FORMS = {
    "relaxed lines": lambda: lines(documents()),
    "canonical lines": lambda: lines(documents(canonical)),
    "array": lambda: json.dumps(documents()),
    "pretty canonical array": lambda: json.dumps(documents(canonical), indent=2),
    "lines with a blank line and a BOM": lambda: "\ufeff" + lines(documents()).replace("\n", "\n\n", 1),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_reads_the_same_unit_vectors(form: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(mongo_export, "BLOCK_CHARS", 5)  # documents cut by the end of every block
    path = tmp_path / "catalog.json"
    path.write_text(FORMS[form](), encoding="utf-8")
    export = read_mongo_export(path)
    assert [item.name for item in export.items] == list(RAW)
    assert [item.id for item in export.items] == ["dress/B001", "B002", "shirt/B003"]
    assert [item.where for item in export.items][0] in ("line 1", "array index 0")
    raw = np.array(list(RAW.values()))
    np.testing.assert_allclose(export.vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-7)
    assert export.vectors.dtype == np.float32


def test_a_windows_name_is_read_with_slashes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(lines([{"name": "dress\\B001.jpeg", "features": [1.0]}, {"name": "a.tiff", "features": [2.0]}]))
    export = read_mongo_export(path)
    assert [(item.name, item.id) for item in export.items] == [("dress/B001.jpeg", "dress/B001"), ("a.tiff", "a")]


def doc(name: object = "a.jpg", features: object = (1.0, 2.0), **extra) -> str:
    fields = {"name": name, "features": list(features) if isinstance(features, tuple) else features, **extra}
    return json.dumps({key: value for key, value in fields.items() if value is not ...})


GOOD = doc()
# (file content, what the one line says after the file name)
BAD = {
    "malformed line": (f'{GOOD}\n{{"name": "b.jpg", "features": [1.0, 2.0}}\n', "line 2: malformed JSON"),
    "malformed array element": (
        f'[{GOOD},\n{{"name": "b.jpg", "features": [1.0 2.0]}}]',
        "array index 1 (line 2, column 36): malformed JSON (Expecting ',' delimiter)",
    ),
    "array cut short": (f"[{GOOD},\n{GOOD[:20]}", "array index 1 (line 2, column"),
    "array without a comma": (f"[{GOOD}\n{GOOD}]", "after array index 0 (line 2, column 1): expected ',' or ']'"),
    "text after the array": (f"[{GOOD}] {GOOD}", "text after the end of the JSON array"),
    "not JSON documents": ("name,features\na.jpg,1\n", "starts with 'n': not a mongoexport file"),
    "no documents": ("[]", "holds no documents"),
    "empty file": ("", "holds no documents"),
    "not a document": ("[[1.0, 2.0]]", "array index 0: not a document (a JSON object) but an array"),
    "no name": (doc(name=...), "line 1: the document has no 'name'"),
    "name not text": (doc(name=7), "line 1: the document has a 'name' that is int 7, not an image path"),
    "no features": (doc(features=...), "line 1 ('a.jpg'): the document has no 'features'"),
    "features not an array": (doc(features="1,2"), "'features' is the text '1,2', not an array of numbers"),
    "empty features": (doc(features=[]), "'features' is an empty array"),
    "a feature as text": (doc(features=[1.0, "2.0"]), "line 1 ('a.jpg'): feature 1 is the text '2.0', not a number"),
    "a feature null": (doc(features=[None, 1.0]), "feature 0 is null, not a number"),
    "NaN, canonical": (doc(features=[1.0, {"$numberDouble": "NaN"}]), "feature 1 is nan, not a finite number"),
    "Infinity, canonical": (doc(features=[{"$numberDouble": "-Infinity"}]), "feature 0 is -inf, not a finite"),
    "NaN, bare": ('{"name": "a.jpg", "features": [1.0, NaN]}', "line 1 ('a.jpg'): feature 1 is nan"),
    "Infinity, bare": ('{"name": "a.jpg", "features": [Infinity]}', "feature 0 is inf, not a finite number"),
    "beyond any double": ('{"name": "a.jpg", "features": [1' + "0" * 400 + "]}", "feature 0 is inf"),
    "an unknown wrapper": (doc(features=[{"$date": "2024"}]), 'feature 0 is the object {"$date": "2024"}'),
    "all zero": (doc(features=[0.0, 0.0]), "every feature is 0, a vector with no direction"),
    "repeated name": (f"{GOOD}\n{GOOD}\n", "line 2 ('a.jpg'): the name is also at line 1"),
    "ids collide": (
        f"{GOOD}\n{doc(name='a.png')}\n",
        "line 2 ('a.png'): its id 'a' (the name without its extension) is also the id of line 1 ('a.jpg')",
    ),
    "lengths differ": (f"{GOOD}\n{doc(name='b.jpg', features=[1.0])}\n", "line 2 ('b.jpg'): 1 features, but line 1"),
    "absolute name": (doc(name="/srv/a.jpg"), "('/srv/a.jpg'): the name is not a path inside the extracted folder"),
    "name climbing out": (doc(name="../a.jpg"), "the name is not a path inside the extracted folder"),
    "control character": (doc(name="a\tb.jpg"), "an item id must not hold control characters"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_export_is_one_line_naming_the_document_and_nothing_is_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """From the command line: the error comes before the checkpoint is read (it is not even a checkpoint)."""
    content, message = BAD[case]
    path = tmp_path / "catalog.json"
    path.write_text(content)
    checkpoint = tmp_path / "notes.txt"
    checkpoint.write_text("not read")
    out = tmp_path / "index"
    code = main(["index", "--checkpoint", str(checkpoint), "--from-mongo-export", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {path}") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_a_file_that_is_not_text_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "catalog.bson"
    path.write_bytes(b"{\xff\xfe\x00")
    code = main(["index", "--checkpoint", str(path), "--from-mongo-export", str(path), "--out", str(tmp_path / "i")])
    assert code == 2 and "is not UTF-8 text (byte 1): not a mongoexport file" in capsys.readouterr().err
