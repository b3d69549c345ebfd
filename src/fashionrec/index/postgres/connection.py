"""Connections to a catalog database: the checks made once when a catalog is opened, and the pool that
every later request borrows from (it replaces broken connections by itself once the server is back)."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from fashionrec.errors import UserError
from fashionrec.index.postgres.errors import first_line, without_password
from fashionrec.index.store import StoreUnavailable

MIN_SERVER = 130000  # PostgreSQL 13, as server_version_num counts
MIN_PGVECTOR = (0, 8, 0)  # iterative index scans (hnsw.iterative_scan); HNSW itself came in 0.5
CONNECT_TIMEOUT_S = 5
# Every connection: no server-side prepared statements (a rebuild swaps the items table under running
# servers, and a statement prepared against the old one would outlive it), and TCP keepalives, so a
# server that vanished from the network is noticed in about 25 s rather than never.
OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "prepare_threshold": None,
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def describe(url: str) -> str:
    """host:port/database of a URL, never its password, for messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an invalid URL)"
    host = str(params.get("host") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    return f"{host}{port}/{params.get('dbname') or params.get('user') or ''}"


def connect(url: str, application: str) -> psycopg.Connection:
    """One connection in autocommit mode, or a one-line error saying why there is none (StoreUnavailable
    for a server that cannot be reached or refuses the credentials)."""
    try:
        return psycopg.connect(url, application_name=application, **OPTIONS)
    except psycopg.ProgrammingError as e:  # libpq could not parse the URL
        raise UserError(f"invalid database URL: {without_password(first_line(e), url)}") from None
    except psycopg.Error as e:
        message = without_password(first_line(e), url)
        raise StoreUnavailable(f"cannot connect to the catalog database {describe(url)}: {message}") from None


def check_server(conn: psycopg.Connection, where: str) -> str:
    """Refuse servers that cannot hold a catalog; install pgvector when it is available but not yet
    created in this database. Returns the schema pgvector's types live in."""
    if conn.info.server_version < MIN_SERVER:
        found = conn.execute("SHOW server_version").fetchone()[0]
        raise UserError(f"the catalog database {where} runs PostgreSQL {found}; fashionrec needs 13 or newer")
    row = conn.execute(
        "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    ).fetchone()
    if row is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise UserError(
                f"the catalog database {where} has no pgvector extension and it could not be created "
                f"({first_line(e)}); install pgvector 0.8 or newer on the server and run CREATE EXTENSION vector"
            ) from None
        return check_server(conn, where)
    version, schema = row
    if _version_tuple(version) < MIN_PGVECTOR:
        raise UserError(
            f"the catalog database {where} has pgvector {version}; fashionrec needs 0.8 or newer "
            "(ALTER EXTENSION vector UPDATE, after installing a newer pgvector on the server)"
        )
    return schema


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def prepare(conn: psycopg.Connection, vector_schema: str) -> None:
    """Per connection: pgvector's schema on the search path (managed services often install extensions
    outside `public`), and its types registered, so numpy arrays go in and out as vectors."""
    if vector_schema not in conn.execute("SELECT current_schemas(false)").fetchone()[0]:
        conn.execute(
            "SELECT set_config('search_path', current_setting('search_path') || ', ' || quote_ident(%s), false)",
            (vector_schema,),
        )
    register_vector(conn)


def open_pool(url: str, where: str, vector_schema: str, size: int, timeout: float) -> ConnectionPool:
    """A pool of up to `size` connections. `timeout` bounds how long a request waits for one: while the
    database is down, requests fail after that long rather than hang."""
    pool = ConnectionPool(
        url,
        kwargs={"application_name": "fashionrec", **OPTIONS},
        min_size=1,
        max_size=size,
        timeout=timeout,
        configure=functools.partial(prepare, vector_schema=vector_schema),
        name=f"fashionrec {where}",
        open=False,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except PoolTimeout:
        raise StoreUnavailable(f"cannot open connections to the catalog database {where}") from None
    return pool
