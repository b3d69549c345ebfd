"""Catalog names (a catalog is a PostgreSQL schema), checked where the command line is parsed: standard
library only."""

from __future__ import annotations

import re

from fashionrec.errors import UserError

DEFAULT_CATALOG = "fashionrec"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_name(name: str) -> str:
    """Plain lower-case identifiers only, so a catalog's schema reads the same in psql and needs no quoting."""
    if not _NAME.fullmatch(name) or name.startswith("pg_"):
        raise UserError(
            f"invalid catalog name {name[:80]!r}: use 1 to 63 lower-case letters, digits and underscores, "
            "starting with a letter or underscore (not pg_)"
        )
    return name
