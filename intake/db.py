"""Engine and session scope: one session per request or job, explicit transactions.

SQLite is the embedded default. It gets WAL (readers never block the writer), a busy timeout
(two processes ingesting at once wait instead of failing), enforced foreign keys and
secure_delete (erased text is zeroed, not left in free pages).
"""

from __future__ import annotations

import contextlib
import select
import sqlite3
import threading
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, IntegrityError
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


def server_closed(dbapi_connection: Any) -> bool:
    """True when the PostgreSQL server has closed, or is closing, this idle connection.

    A restart or ``pg_terminate_backend`` makes the server send its FATAL message and close the
    socket, so the socket of an idle connection turns readable: one non-blocking ``select`` tells,
    where ``pool_pre_ping`` spent a round trip (``SELECT 1``) on every checkout, about a seventh
    of a webhook request. Nothing else is ever due on an idle connection (no LISTEN here), so
    anything to read counts as a goodbye; at worst a connection is replaced for nothing. A
    connection cut without a word (a network partition) is not seen here: its first statement
    fails, the request answers 503 and SQLAlchemy invalidates the pool.
    """
    from psycopg import OperationalError
    from psycopg.pq import ConnStatus

    pgconn = dbapi_connection.pgconn
    if dbapi_connection.closed or pgconn.status != ConnStatus.OK:
        return True
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError, OperationalError):  # no socket left at all
        return True
    return bool(readable)


def _refuse_closed_connection(dbapi_connection, _record, _proxy) -> None:
    # DisconnectionError on checkout makes the pool discard the connection and open a new one.
    if server_closed(dbapi_connection):
        raise DisconnectionError("the server closed this pooled connection")


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_autocommit_driver)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # A web worker that outlived a database restart must reconnect instead of failing its next
    # request: the checkout check reads the socket (server_closed) instead of pinging the server.
    # connect_timeout keeps "database down" a fast 503.
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


class DirectConnection:
    """A PostgreSQL connection held by each thread, in autocommit mode, for a write that is one
    statement (the webhook's message + receipt).

    Autocommit makes that statement its own transaction: the answer comes back once it is
    committed, so storing a message costs one round trip, where a pooled session costs three
    (``pool_pre_ping``'s ``SELECT 1``, the statement, the commit) and SQLAlchemy's bookkeeping
    around each.

    Liveness without a ping: before each use the socket is checked for a server-side close
    (server_closed). A goodbye that arrives just after that check (the server was restarted or
    the backend terminated a moment ago) fails the statement, which is then run once more on a
    new connection, with ``RETRY_TIMEOUT_MS`` to finish: the statement is safe to repeat (the
    dedupe key makes a second insert a no-op), and a database still unable to answer quickly is
    reported as unavailable (the webhook's 503) rather than holding the provider's request.
    """

    RETRY_TIMEOUT_MS = 2000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._all: set[Any] = set()  # every thread's connection, for close()
        self._lock = threading.Lock()

    def _connection(self) -> tuple[Any, bool]:
        """This thread's connection, and whether it was opened just now."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or server_closed(conn)):
            self.drop()
            conn = None
        if conn is not None:
            return conn, False
        # Opened through the engine so that the URL's options (search_path, application_name,
        # connect_timeout) apply, then detached: this connection is ours, not the pool's.
        fairy = self.engine.raw_connection()
        fairy.detach()
        conn = fairy.dbapi_connection
        conn.autocommit = True
        self._local.conn = conn
        with self._lock:
            self._all.add(conn)
        return conn, True

    def run(self, work: Callable[[Any], Any]) -> Any:
        """``work(cursor)`` on this thread's connection; psycopg's errors propagate."""
        from psycopg import InterfaceError, OperationalError

        conn, fresh = self._connection()
        try:
            with conn.cursor() as cursor:
                return work(cursor)
        except (OperationalError, InterfaceError):
            if not (conn.closed or server_closed(conn)):
                raise  # the connection is fine: a timeout, a cancel; the caller decides
            self.drop()
            if fresh:
                raise
        conn, _ = self._connection()
        with conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(self.RETRY_TIMEOUT_MS)}")
            try:
                return work(cursor)
            finally:
                if not conn.closed:
                    cursor.execute("SET statement_timeout TO DEFAULT")

    def drop(self) -> None:
        """Forget this thread's connection (closing it)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self._close(conn)

    def close(self) -> None:
        """Close every thread's connection (Database.dispose)."""
        with self._lock:
            conns, self._all = list(self._all), set()
        for conn in conns:
            self._close(conn)
        self._local = threading.local()

    def _close(self, conn: Any) -> None:
        with self._lock:
            self._all.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()


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
        # PostgreSQL only: the webhook's one-statement store (see DirectConnection).
        self.direct: DirectConnection | None = None if self.is_sqlite else DirectConnection(self.engine)

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
        if self.direct is not None:
            self.direct.close()
        self.engine.dispose()


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an IntegrityError is a unique-constraint clash (a concurrent duplicate)."""
    from psycopg.errors import UniqueViolation  # imported when needed: a clash is rare

    orig = exc.orig
    if isinstance(orig, sqlite3.IntegrityError):
        return orig.sqlite_errorcode in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
    return isinstance(orig, UniqueViolation)
