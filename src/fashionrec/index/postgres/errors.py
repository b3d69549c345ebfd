"""What can go wrong with a catalog database, as exceptions the CLI and the server tell apart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import PoolTimeout

from fashionrec.errors import UserError


class StoreUnavailable(UserError):
    """The database cannot be reached right now (down, restarting, network lost). The CLI prints it as one
    line; a server answers 503 and keeps going, as the pool reconnects by itself once it is back."""


class NoSuchItem(UserError):
    """An item id the catalog does not hold (a server answers 404)."""


def no_such_item(item_id: str, label: str) -> NoSuchItem:
    return NoSuchItem(f"no item with id {item_id[:200]!r} in the {label}")


class ItemExists(UserError):
    """Adding an item whose id the catalog already holds (a server answers 409)."""


def first_line(error: BaseException) -> str:
    """libpq's messages run over several lines (hints, the socket tried); one is enough for a user."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def reachable(where: str) -> Iterator[None]:
    """Turns a lost connection, a server shutting down or an exhausted wait for a connection into
    StoreUnavailable; every other database error (a bug, a constraint) passes through unchanged."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as e:
        raise StoreUnavailable(f"the catalog database {where} is unavailable: {first_line(e)}") from e
