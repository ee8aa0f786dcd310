"""After an erasure: make the database files forget too.

A DELETE removes rows from the tables, not bytes from the disk. On SQLite:

- ``PRAGMA secure_delete=ON`` (set on every connection, ``intake/db.py``) zeroes the space a
  deleted or rewritten row leaves, in the table and its indexes;
- pages written before that pragma existed (a database older than this version) may still hold
  old copies in free space: ``VACUUM`` rebuilds the file from the live rows only;
- the WAL keeps earlier versions of the pages it logged until it is reset:
  ``PRAGMA wal_checkpoint(TRUNCATE)`` copies it back into the database and truncates it to zero
  bytes (it waits, on the busy timeout, for readers still using it).

On PostgreSQL dead rows stay in the table files (and their TOAST) until ``VACUUM`` reclaims
them, and ``VACUUM (FULL)`` rewrites the files; the WAL archive and backups keep everything
until they expire. That is the operator's to run and to schedule (README, "Privacy"), so this
module only says so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from intake.db import Database

log = logging.getLogger(__name__)

POSTGRES_NOTE = (
    "PostgreSQL keeps deleted rows in its files until VACUUM, and in WAL archives and backups "
    "until they expire: run `VACUUM (FULL) messages, attachments, events, contacts, inquiries, "
    "classifications, receipts, model_versions;` when convenient, and let backups age out"
)


@dataclass
class StorageReport:
    database: str
    vacuumed: bool = False
    wal_truncated: bool | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def settle(db: Database, *, vacuum: bool) -> StorageReport:
    """Rewrite and checkpoint a SQLite file so erased bytes leave it; on PostgreSQL, a note."""
    if not db.is_sqlite:
        return StorageReport("postgresql", note=POSTGRES_NOTE)
    report = StorageReport("sqlite")
    # A raw DB-API connection: VACUUM and a checkpoint cannot run inside a transaction, and the
    # engine begins every transaction itself (BEGIN IMMEDIATE, see intake/db.py).
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        if vacuum:
            cursor.execute("VACUUM")
            report.vacuumed = True
        busy, _log_frames, _checkpointed = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        report.wal_truncated = busy == 0
        cursor.close()
    finally:
        connection.close()
    if not report.wal_truncated:
        report.note = ("another process kept the write-ahead log in use; it is truncated at the "
                       "next checkpoint nobody blocks (run the command again to force it now)")
        log.warning("WAL checkpoint after erasure was blocked by a reader")
    return report
