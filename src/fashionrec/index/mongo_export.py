"""Reading a `mongoexport` file of the original system's catalog: the `{name, features}` documents its feature
extractor stored in MongoDB. `name` is the image's path relative to the folder it extracted, extension included
(`\\` of a Windows path read as `/`); `features` the raw, unnormalised output of the model's target block.

mongoexport writes one document per line (its default) or a JSON array (`--jsonArray`), in MongoDB's extended
JSON: `_id` as `{"$oid": ...}` (ignored, as is any other field), numbers plain or, in canonical mode, as
`{"$numberDouble": "..."}`, `{"$numberInt": "..."}`, `{"$numberLong": "..."}` (`{"$numberDecimal": "..."}`
too), non-finite ones spelled "NaN", "Infinity", "-Infinity". Both forms and every spelling are read, a block
at a time, so a catalog of any size needs memory for its vectors only.

A document that cannot be imported is one `UserError` naming the file, the document (its line, or its index in
the array) and its name: malformed JSON, no `name` or `features`, a name that is not a relative path, a
repeated name, two names whose ids (the name without its extension) are equal, a value that is not a finite
number, vectors of different lengths, an all-zero vector. Vectors come back L2-normalised.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from fashionrec.errors import UserError
from fashionrec.index.items import check_id

BLOCK_CHARS = 1 << 20  # text read at a time
MAX_DOCUMENT_CHARS = 64 << 20  # a document still unfinished after this much text is malformed, not cut by a block
NUMBER_TYPES = ("$numberDouble", "$numberInt", "$numberLong", "$numberDecimal")
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class ExportedItem:
    name: str  # the image's path relative to the folder they extracted, `/`-separated
    id: str  # the name without its extension, as fashionrec names a folder's images
    where: str  # "line 7" or "array index 6": which document, for messages

    def describe(self) -> str:
        return f"{self.where} ({self.name[:200]!r})"


@dataclass(frozen=True)
class MongoExport:
    path: Path
    items: list[ExportedItem]  # in the file's order
    vectors: np.ndarray  # float32 [N, d], row i is items[i], L2-normalised

    def check_dim(self, dim: int, checkpoint: str | Path) -> None:
        """The vectors must be the checkpoint's: its target block's output length."""
        if self.vectors.shape[1] != dim:
            raise UserError(
                f"{self.path}, {self.items[0].describe()}: {self.vectors.shape[1]} features, but the "
                f"checkpoint {checkpoint} embeds in {dim}; export the catalog this checkpoint encoded"
            )


def read_mongo_export(path: str | Path) -> MongoExport:
    """Every document of the file, checked; the first problem is a UserError naming its document."""
    path = Path(path)
    items: list[ExportedItem] = []
    rows: list[np.ndarray] = []
    by_name: dict[str, ExportedItem] = {}
    by_id: dict[str, ExportedItem] = {}
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for where, raw in _documents(handle, path):
                item, vector = _document(raw, where, path)
                if item.name in by_name:
                    raise UserError(f"{path}, {item.describe()}: the name is also at {by_name[item.name].where}")
                if item.id in by_id:
                    other = by_id[item.id]
                    raise UserError(
                        f"{path}, {item.describe()}: its id {item.id[:200]!r} (the name without its extension) is "
                        f"also the id of {other.describe()}"
                    )
                if rows and vector.shape != rows[0].shape:
                    raise UserError(
                        f"{path}, {item.describe()}: {vector.shape[0]} features, but {items[0].describe()} has "
                        f"{rows[0].shape[0]}"
                    )
                by_name[item.name] = by_id[item.id] = item
                items.append(item)
                rows.append(vector)
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): not a mongoexport file") from None
    if not items:
        raise UserError(f"{path} holds no documents")
    return MongoExport(path, items, np.stack(rows))


def _documents(handle: IO[str], path: Path) -> Iterator[tuple[str, Any]]:
    """(where, parsed document) for each document of a JSON-lines file or a JSON array."""
    text = _Text(handle)
    first = text.next_char()
    if first == "[":
        yield from _array(text, path)
        return
    if first is not None and first != "{":
        raise UserError(f"{path} starts with {first!r}: not a mongoexport file (JSON documents, or a JSON array)")
    handle.seek(0)
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, line {number}: malformed JSON ({e.msg} at column {e.colno})") from None


def _array(text: _Text, path: Path) -> Iterator[tuple[str, Any]]:
    """The documents of `[doc, doc, ...]`, one at a time."""
    text.pos += 1  # the "["
    index = 0
    while True:
        char = text.next_char()
        if char == "]" and index == 0:
            text.pos += 1
            break
        where = f"array index {index}"
        try:
            yield where, text.decode()
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, {where} ({text.place(e.pos)}): malformed JSON ({e.msg})") from None
        index += 1
        char = text.next_char()
        if char == "]":
            text.pos += 1
            break
        if char != ",":
            found = "the end of the file" if char is None else repr(char)
            raise UserError(f"{path}, after {where} ({text.place(text.pos)}): expected ',' or ']', found {found}")
        text.pos += 1
    if text.next_char() is not None:
        raise UserError(f"{path} ({text.place(text.pos)}): text after the end of the JSON array")


class _Text:
    """A file read a block at a time, with a position in the text held and its line number (for messages)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.line = 1  # the line of text[0]
        self.eof = False

    def _more(self) -> bool:
        """Read another block, dropping the text before the position; False at the end of the file."""
        block = "" if self.eof else self.handle.read(BLOCK_CHARS)
        if not block:
            self.eof = True
            return False
        self.line += self.text.count("\n", 0, self.pos)
        self.text, self.pos = self.text[self.pos :] + block, 0
        return True

    def next_char(self) -> str | None:
        """The next character that is not white space (the position moves to it), None at the end."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._more():
                return None

    def decode(self) -> Any:
        """The JSON value at the position, reading more text while it may be cut by the end of a block."""
        while True:
            try:
                value, end = _decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if len(self.text) - self.pos < MAX_DOCUMENT_CHARS and self._more():
                    continue
                raise
            self.pos = end
            return value

    def place(self, pos: int) -> str:
        """Where `pos` of the text held is in the file."""
        line = self.line + self.text.count("\n", 0, pos)
        return f"line {line}, column {pos - self.text.rfind(chr(10), 0, pos)}"


def _document(raw: Any, where: str, path: Path) -> tuple[ExportedItem, np.ndarray]:
    """One document's item and unit vector."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}, {where}: not a document (a JSON object) but {_kind(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problem = "has no 'name'" if name is None else f"has a 'name' that is {_kind(name)}, not an image path"
        raise UserError(f"{path}, {where}: the document {problem}")
    item = _item(name, where, path)
    if "features" not in raw:
        raise UserError(f"{path}, {item.describe()}: the document has no 'features'")
    vector = _vector(raw["features"], item, path)
    return item, vector


def _item(name: str, where: str, path: Path) -> ExportedItem:
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise UserError(f"{path}, {where} ({name[:200]!r}): the name is not a path inside the extracted folder")
    try:
        item_id = check_id(relative.with_suffix("").as_posix())
    except UserError as e:
        raise UserError(f"{path}, {where} ({name[:200]!r}): {e}") from None
    return ExportedItem(relative.as_posix(), item_id, where)


def _vector(features: Any, item: ExportedItem, path: Path) -> np.ndarray:
    """The features as a float32 unit vector (checked and normalised in float64)."""
    if not isinstance(features, list) or not features:
        kind = "an empty array" if features == [] else _kind(features)
        raise UserError(f"{path}, {item.describe()}: 'features' is {kind}, not an array of numbers")
    if all(type(value) is float for value in features):  # what their extractor wrote: the common case, fast
        values = np.asarray(features, dtype=np.float64)
    else:
        values = np.array([_number(value, i, item, path) for i, value in enumerate(features)], np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise UserError(f"{path}, {item.describe()}: feature {bad[0]} is {values[bad[0]]}, not a finite number")
    norm = float(np.linalg.norm(values))
    if norm == 0.0:
        raise UserError(f"{path}, {item.describe()}: every feature is 0, a vector with no direction")
    return (values / norm).astype(np.float32)


def _number(value: Any, index: int, item: ExportedItem, path: Path) -> float:
    """A plain number, or extended JSON's `{"$numberDouble": "1.5"}` and its kin (an integer beyond any float
    is infinite, as a double's text beyond the largest is)."""
    number: Any = value if type(value) in (float, int) else None  # bool, null, text, arrays: not numbers
    if isinstance(value, dict) and len(value) == 1:
        ((kind, text),) = value.items()
        number = text if kind in NUMBER_TYPES and isinstance(text, str) else None
    if number is not None:
        try:
            return float(number)
        except OverflowError:
            return math.inf
        except ValueError:
            pass
    raise UserError(f"{path}, {item.describe()}: feature {index} is {_kind(value)}, not a number")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"the object {json.dumps(value)[:60]}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"
