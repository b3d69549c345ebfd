"""Secrets given to a command (an admin token, a database or Qdrant API key): read from a file named on the
command line, else from an environment variable; never written anywhere, never shown in messages."""

from __future__ import annotations

import os
from pathlib import Path

from fashionrec.errors import UserError


def read_secret(path: Path | None, env: str) -> str | None:
    """The secret in the file `path` (surrounding whitespace dropped), else in `env`, else None."""
    if path is not None:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the secret file {path}: {getattr(e, 'strerror', None) or e}") from None
        if not secret:
            raise UserError(f"the secret file {path} is empty")
        return secret
    return os.environ.get(env, "").strip() or None
