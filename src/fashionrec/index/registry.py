"""Where a catalog location leads. Each kind of store is one module and one entry in `STORES`: a folder
path opens a `FolderStore`; a URL opens the kind that claims its scheme (`postgresql://...`).

The stores are imported only when opened, so the command line can check a location's scheme while it is
parsed without loading any of them."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from fashionrec.errors import UserError

if TYPE_CHECKING:
    from fashionrec.index.store import CatalogStore, StoreOptions

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StoreKind:
    """A kind of catalog store. `target` is "module:Class"; the class provides
    `open(location: str, options: StoreOptions, create: bool = False) -> CatalogStore` (create: an empty
    location is fine, for a first build). `schemes`: the URL schemes it takes; the kind with none takes
    folder paths."""

    name: str
    target: str
    schemes: tuple[str, ...] = ()


STORES = (
    StoreKind("folder", "fashionrec.index.folder_store:FolderStore"),
    StoreKind("postgres", "fashionrec.index.postgres.store:PostgresCatalog", ("postgresql", "postgres")),
)


def is_url(location: str | Path) -> bool:
    return _URL.match(str(location)) is not None


def store_kind(location: str | Path) -> StoreKind:
    match = _URL.match(str(location))
    scheme = match["scheme"].lower() if match else None
    for kind in STORES:
        if (scheme is None and not kind.schemes) or scheme in kind.schemes:
            return kind
    known = ", ".join(f"{s}://" for kind in STORES for s in kind.schemes) or "none"
    raise UserError(f"no catalog store takes {redact(str(location))!r}: give a folder, or a URL of: {known}")


def check_url(location: str) -> str:
    """A URL some store takes, with a host part that parses (a port that is a number); for the command line."""
    store_kind(location)
    try:
        urlsplit(location).port  # noqa: B018 (raises for a port that is not a number)
    except ValueError as e:
        raise UserError(f"invalid catalog URL {redact(location)!r}: {e}") from None
    return location


def open_catalog(location: str | Path, options: StoreOptions | None = None, *, create: bool = False) -> CatalogStore:
    """The store at `location`; UserError when there is none (unless `create`), StoreUnavailable when it
    cannot be reached, CatalogDamaged when what it holds fails its checks."""
    from fashionrec.index.store import StoreOptions

    module, _, name = store_kind(location).target.partition(":")
    store_class = getattr(importlib.import_module(module), name)
    return store_class.open(str(location), options or StoreOptions(), create=create)


def local_folder(location: str | Path) -> Path | None:
    """The folder a location names, when it is one (a build skips it when scanning for images)."""
    return Path(location) if not store_kind(location).schemes else None


def redact(location: str) -> str:
    """A URL without its password, for messages and logs."""
    if not _URL.match(location):
        return location
    try:
        parts = urlsplit(location)
        password = parts.password
    except ValueError:  # not even a URL: hide all that could be a password
        return location.split("://", 1)[0] + "://***"
    if not password:
        return location
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
