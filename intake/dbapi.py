"""Plain DB-API connections to the configured database, for commands that must start at once.

Importing SQLAlchemy costs `intake list` about 0.4 s on this project's machine before it reads a
row (docs/benchmarks.md, "CLI start-up"), and listing needs two SELECTs. This opens the database
with its own driver (the stdlib's sqlite3; psycopg, imported only for PostgreSQL) and tells
whether the schema is current the way ``intake.migrate.schema_is_current`` does.

It only reads a database that is ready. Everything else stays with ``intake.cli.open_database``:
``connect`` answers None for a URL it does not open the same way SQLAlchemy would (an SQLite
file not created yet, ``:memory:``, URI options, another driver), and the caller checks
``schema_is_current`` and falls back when it is not (the embedded SQLite is migrated there, a
server database behind is told to run `intake db upgrade`).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Sequence

from intake import migrate

_SQLITE_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")
# intake.config.normalize_database_url turns postgres:// and postgresql:// into the first.
_POSTGRESQL_PREFIXES = ("postgresql+psycopg://", "postgresql://")
# As intake.db.make_engine: "database down" is a quick error, not a hang.
CONNECT_TIMEOUT_S = 5


class Unreachable(Exception):
    """The server database did not answer; the message is the driver's."""


class PlainConnection:
    """One DB-API connection inside one read transaction (a consistent snapshot for a listing and
    its count, as ``Database.read_session`` gives), with ``?`` placeholders on either driver."""

    def __init__(self, raw: Any, dialect: str, error: type[Exception]) -> None:
        self.raw = raw
        self.dialect = dialect
        # The driver's base exception: what a failed statement raises.
        self.error = error

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, tuple(params))
            return cursor.fetchall()
        finally:
            cursor.close()

    def close(self) -> None:
        # Nothing was written: closing ends (rolls back) the read transaction.
        self.raw.close()

    def __enter__(self) -> "PlainConnection":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL, as SQLAlchemy's pysqlite dialect reads it;
    None for anything it would read differently (memory, ``file:`` URIs, query options,
    percent-escapes)."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix):]
            if not path or path.startswith((":memory:", "file:")) or any(c in path for c in "?%#"):
                return None
            return path
    return None


def connect(url: str) -> PlainConnection | None:
    """A read connection to the database at ``url`` (a normalized ``DATABASE_URL``), or None
    when only SQLAlchemy can open it the right way. Raises ``Unreachable`` when a server
    database does not answer."""
    path = sqlite_path(url)
    if path is not None:
        # A missing file is a first run: the full path creates and migrates it.
        if not os.path.isfile(path):
            return None
        try:
            # isolation_level=None: the transaction is ours to begin. A deferred BEGIN takes no
            # lock under WAL, so a listing never waits for a running ingest (nor blocks it).
            raw = sqlite3.connect(path, timeout=30, isolation_level=None)
            raw.execute("BEGIN")
        except sqlite3.Error:
            return None
        return PlainConnection(raw, "sqlite", sqlite3.Error)
    for prefix in _POSTGRESQL_PREFIXES:
        if url.startswith(prefix):
            return _connect_postgresql("postgresql://" + url[len(prefix):])
    return None


def _connect_postgresql(conninfo: str) -> PlainConnection | None:
    # libpq reads the URI itself, query options included (the tests' ?options=-csearch_path=...).
    import psycopg

    try:
        raw = psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as exc:
        raise Unreachable(str(exc)) from exc
    except psycopg.Error:  # an option libpq does not know: leave it to SQLAlchemy's reading
        return None
    # psycopg begins a transaction with the first statement and keeps it until close.
    return PlainConnection(raw, "postgresql", psycopg.Error)


def schema_is_current(conn: PlainConnection) -> bool:
    """True when the database is at the migration files' head (``intake.migrate.is_head``)."""
    try:
        rows = conn.rows(migrate.VERSION_QUERY)
    except conn.error:  # no alembic_version table: a database never migrated
        return False
    return len(rows) == 1 and migrate.is_head(rows[0][0])
