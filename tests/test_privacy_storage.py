"""The SQLite files forget too: secure_delete zeroes what is deleted, the WAL is truncated, and
VACUUM clears copies that a database older than secure_delete left in its free pages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from intake.config import Settings
from intake.db import Database
from intake.migrate import upgrade
from intake.privacy import storage
from intake.runtime import Runtime
from intake.jobs import InlineQueue
from tests.privacy_helpers import JANE, JANE_NAME, PHRASE, email, ingest, leftovers_sqlite


def sqlite_rt(tmp_path: Path) -> Runtime:
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    upgrade(url)
    settings = Settings.from_env({"DATABASE_URL": url, "INTAKE_QUEUE_PATH": str(tmp_path / "q.db")})
    return Runtime(settings, Database(url), queue=InlineQueue())


def test_every_connection_has_secure_delete(tmp_path):
    rt = sqlite_rt(tmp_path)
    with rt.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    rt.db.dispose()


def test_the_wal_is_truncated_after_an_erasure(tmp_path):
    from intake.privacy import run

    rt = sqlite_rt(tmp_path)
    ingest(rt, email(sender=f"{JANE_NAME} <{JANE}>", subject="Hello", body=f"My {PHRASE}."))
    wal = Path(make_url(rt.settings.database_url).database + "-wal")
    assert wal.stat().st_size > 0
    result = run.forget_person(rt, JANE, "cli:tester")
    assert result.storage == {"database": "sqlite", "vacuumed": True, "wal_truncated": True}
    assert wal.stat().st_size == 0
    assert leftovers_sqlite(rt.settings.database_url, [JANE, PHRASE]) == []
    rt.db.dispose()


def test_vacuum_clears_copies_left_before_secure_delete(tmp_path):
    """A row rewritten by a connection without secure_delete (an older intake) leaves its old copy
    in a free page; deleting the row later does not touch that page. VACUUM does (the command
    path, run.forget_person, always vacuums: see the test above)."""
    from intake.privacy import actions

    rt = sqlite_rt(tmp_path)
    ingest(rt, email(sender=f"{JANE_NAME} <{JANE}>", subject="Hello", body=f"My {PHRASE}. " + "x" * 5000))
    path = make_url(rt.settings.database_url).database
    rt.db.dispose()
    legacy = sqlite3.connect(path)
    legacy.execute("PRAGMA secure_delete=OFF")
    legacy.execute("UPDATE messages SET raw = raw || X'0A'")  # the old raw moves to free pages
    legacy.commit()
    legacy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    legacy.close()

    with rt.db.session() as session:
        actions.forget(session, JANE, actor="cli:tester")
    storage.settle(rt.db, vacuum=False)
    assert leftovers_sqlite(rt.settings.database_url, [PHRASE]), "the stale copy should still be there"
    report = storage.settle(rt.db, vacuum=True)
    assert report.vacuumed and report.wal_truncated
    assert leftovers_sqlite(rt.settings.database_url, [JANE, PHRASE]) == []
    rt.db.dispose()


def test_postgres_gets_a_note_not_a_vacuum(tmp_path):
    from tests.conftest import database_url

    with database_url("postgresql", tmp_path) as url:
        db = Database(url)
        report = storage.settle(db, vacuum=True)
        db.dispose()
    assert report.database == "postgresql" and "VACUUM (FULL)" in report.note and not report.vacuumed
