"""From a `credential_store` URL to a SQLAlchemy engine: SQLite through the standard library's
`sqlite3`, PostgreSQL through psycopg 3. Both engines are synchronous and used from a few
threads: a lookup runs in a worker thread, so no connection is tied to one event loop."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def is_database_url(value: str) -> bool:
    return value.startswith(SCHEMES)


def sqlalchemy_url(url: str) -> URL:
    """The URL with its driver named: `postgresql://` means psycopg 3, not psycopg2."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "postgresql+psycopg"):
        raise ValueError(f"unsupported database {parsed.drivername!r}: sqlite or postgresql")
    return parsed


def shown(url: str) -> str:
    """The URL safe to print: the password masked."""
    text: str = sqlalchemy_url(url).render_as_string(hide_password=True)
    return text


def libpq_url(url: str) -> str:
    """The URL as psycopg's own `connect` takes it (for the LISTEN connection)."""
    parsed = sqlalchemy_url(url).set(drivername="postgresql")
    # Typed here: the compiled build type-checks this module without SQLAlchemy installed.
    text: str = parsed.render_as_string(hide_password=False)
    return text


def create(url: str, *, pool_size: int = 4, timeout: float = 1.0) -> Engine:
    """An engine holding at most `pool_size` connections, each attempt bounded by `timeout`."""
    parsed = sqlalchemy_url(url)
    connect_args: dict[str, Any]
    if parsed.drivername == "sqlite":
        # `timeout` is how long sqlite3 waits on another process's write lock.
        connect_args = {"timeout": timeout, "check_same_thread": False}
    else:
        # libpq counts whole seconds; statement_timeout stops a query the server is slow on.
        connect_args = {
            "connect_timeout": max(2, math.ceil(timeout)),
            "application_name": "tba_guard",
            "options": f"-c statement_timeout={math.ceil(timeout * 1000)}",
        }
    engine = create_engine(
        parsed,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        connect_args=connect_args,
    )
    if parsed.drivername == "sqlite":
        event.listen(engine, "connect", _sqlite_foreign_keys)
    return engine


def _sqlite_foreign_keys(connection: sqlite3.Connection, record: object) -> None:
    # SQLite checks foreign keys only when each connection asks it to.
    connection.execute("PRAGMA foreign_keys = ON")
