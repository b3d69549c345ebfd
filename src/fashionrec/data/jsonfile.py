"""Read the JSON files a user points us at, turning every way they can be wrong into a one-line UserError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fashionrec.errors import UserError


def read_json(path: Path) -> Any:
    """Parse `path`; a missing, unreadable or malformed file names the path (and the line/column)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"expected a file, found a folder: {path}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
