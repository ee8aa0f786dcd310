"""Liveness without a ping, and the webhook's one-statement store on a held connection.

PostgreSQL only where the subject is PostgreSQL's (a backend terminated under a connection);
the store's answers are compared with the session path on the same database.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import create_engine, event, func, select, text

from intake.db import Database, server_closed
from intake.inquiries import store_raw
from intake.inquiries.store import store_raw_direct
from intake.models import Message, Receipt


def _pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL connection's liveness")


def _message(n: int) -> bytes:
    return (f"From: A {n} <a{n}@example.org>\r\nSubject: Q {n}\r\nMessage-ID: <direct-{n}-{uuid.uuid4().hex}@x>\r\n"
            f"\r\nHello {n}\r\n").encode()


def _terminate(db_url: str, app_name: str) -> int:
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": app_name}).scalar()
    finally:
        admin.dispose()


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_server_closed_sees_a_terminated_backend_without_a_round_trip(db_url):
    _pg_only(db_url)
    app_name = f"liveness-{uuid.uuid4().hex[:8]}"
    db = Database(db_url + f"&application_name={app_name}")
    try:
        raw = db.engine.raw_connection()
        assert server_closed(raw.dbapi_connection) is False
        assert _terminate(db_url, app_name) == 1
        _wait_until(lambda: server_closed(raw.dbapi_connection))
        raw.invalidate()
    finally:
        db.dispose()


def test_pool_replaces_a_dead_connection_on_checkout_and_sends_no_ping(db_url):
    """The engine has no pool_pre_ping: a pooled connection whose backend went away is replaced at
    checkout by looking at its socket, and a healthy one is handed out with no extra statement."""
    _pg_only(db_url)
    app_name = f"liveness-{uuid.uuid4().hex[:8]}"
    db = Database(db_url + f"&application_name={app_name}")
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        assert db.engine.pool._pre_ping is False
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        statements.clear()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar() == 2
        assert statements == ["SELECT 2"]  # no ping before it
        assert _terminate(db_url, app_name) == 1
        time.sleep(0.5)  # the backend's goodbye reaches the socket
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 3")).scalar() == 3
    finally:
        db.dispose()


def test_direct_store_answers_like_the_session_store(db_url):
    _pg_only(db_url)
    db = Database(db_url)
    try:
        assert db.direct is not None
        raw = _message(1)
        first = db.direct.run(lambda cur: store_raw_direct(cur, raw, provider="mime", provider_event_id="e1"))
        again = db.direct.run(lambda cur: store_raw_direct(cur, raw, provider="mime"))
        with db.session() as session:
            third = store_raw(session, raw, provider="mime")
        assert (first.duplicate, again.duplicate, third.duplicate) == (False, True, True)
        assert first.message_id == again.message_id == third.message_id
        with db.session() as session:
            row = session.get(Message, first.message_id)
            assert row.raw == raw and row.state == "received" and row.message_id.startswith("direct-1-")
            outcomes = session.scalars(select(Receipt.outcome).order_by(Receipt.id)).all()
            assert outcomes == ["stored", "duplicate", "duplicate"]
            assert session.scalar(select(Receipt.provider_event_id).order_by(Receipt.id).limit(1)) == "e1"
    finally:
        db.dispose()


def test_direct_connection_reconnects_after_its_backend_is_terminated(db_url):
    """The held connection is found dead (or fails and is retried once on a new one): the write
    goes through and is stored once."""
    _pg_only(db_url)
    app_name = f"direct-{uuid.uuid4().hex[:8]}"
    db = Database(db_url + f"&application_name={app_name}")
    try:
        db.direct.run(lambda cur: store_raw_direct(cur, _message(2), provider="mime"))
        assert _terminate(db_url, app_name) == 1
        # At once, before the goodbye is certainly on the socket: the retry covers that race.
        stored = db.direct.run(lambda cur: store_raw_direct(cur, _message(3), provider="mime"))
        assert stored.duplicate is False
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Message)) == 2
    finally:
        db.dispose()


def test_sqlite_has_no_direct_connection(db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's path")
    db = Database(db_url)
    try:
        assert db.direct is None
    finally:
        db.dispose()
