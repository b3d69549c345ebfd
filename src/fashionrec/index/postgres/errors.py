"""How database failures reach the user: the store interface's `StoreUnavailable` for a database that cannot
be reached now, one line for everything else, never a password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg_pool import PoolTimeout

from fashionrec.index.store import StoreUnavailable


def first_line(error: BaseException) -> str:
    """libpq's messages run over several lines (hints, the socket tried); one is enough for a user."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def without_password(text: str, url: str) -> str:
    """`text` with the URL's password (as written and decoded) replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


@contextmanager
def reachable(where: str) -> Iterator[None]:
    """Turns a lost connection, a server shutting down or an exhausted wait for a connection into
    StoreUnavailable; every other database error (a bug, a constraint) passes through unchanged."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as e:
        raise StoreUnavailable(f"the catalog database {where} is unavailable: {first_line(e)}") from e
