"""Engine and session scope: one session per request or job, explicit transactions.

SQLite is the embedded default. It gets WAL (readers never block the writer), a busy timeout
(two processes ingesting at once wait instead of failing), enforced foreign keys and
secure_delete (erased text is zeroed, not left in free pages).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from intake.config import Settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted and rewritten content is overwritten with zeros instead of lingering in free
    # pages, so an erased person's text leaves the file (intake.privacy; cost in
    # docs/benchmarks.md).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_autocommit_driver(dbapi_connection, _record) -> None:  # pragma: no cover
    # Let SQLAlchemy's "begin" event issue the BEGIN itself (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn) -> None:  # pragma: no cover - trivial
    # A deferred SQLite transaction that reads and then writes fails at once with "database is
    # locked" when another process wrote in between; BEGIN IMMEDIATE takes the write lock up
    # front, so concurrent ingesters queue on busy_timeout instead. Read-only sessions
    # (Database.read_session) begin deferred: under WAL they neither wait nor block anyone.
    if conn.get_execution_options().get("intake_readonly"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_autocommit_driver)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # pool_pre_ping: a web worker that outlived a database restart reconnects instead of
    # failing its first request; connect_timeout keeps "database down" a fast 503.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


class Database:
    """The engine and session factory for one database URL."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = sessionmaker(
            self.engine.execution_options(intake_readonly=True), expire_on_commit=False
        )
        # Called after a commit with the deliveries it owed, [(kind, id)]: the runtime hands them
        # to the queue (intake.outbox.kick). Unset, they wait for the outbox poller.
        self.on_owed: Callable[[list[Any]], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        return cls(settings.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any exception."""
        from intake.outbox.core import PENDING_IDS

        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            session.info.pop(PENDING_IDS, None)
            raise
        finally:
            session.close()
        owed = session.info.pop(PENDING_IDS, None)
        if owed and self.on_owed is not None:
            self.on_owed(owed)

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session that only reads. On SQLite it takes no write lock, so it may run while
        the same process holds a write transaction (a model check inside a job, a Slack query)."""
        session = self.read_sessionmaker()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create_all(self) -> None:
        """Tables straight from the models (tests); production uses `intake db upgrade`."""
        from intake.models import Base

        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an IntegrityError is a unique-constraint clash (a concurrent duplicate)."""
    from psycopg.errors import UniqueViolation  # imported when needed: a clash is rare

    orig = exc.orig
    if isinstance(orig, sqlite3.IntegrityError):
        return orig.sqlite_errorcode in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
    return isinstance(orig, UniqueViolation)
