"""An inquiry's summary: one line of `intake list`, one object of `intake list --json`.

The object is a contract (../shared/DESIGN.md). It is built in one place, ``summary``, from two
sources: ORM objects (``intake.inquiries.queries.inquiry_summary``, for Slack and `intake list
--query`) and rows read over a plain DB-API connection (``read_page``), which is how a plain
`intake list` answers without importing SQLAlchemy (``intake.dbapi``). tests/test_summaries.py
runs both on the same data, on SQLite and PostgreSQL, so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from intake.dbapi import PlainConnection


def iso(value: dt.datetime | None) -> str | None:
    """A stored time as ISO 8601 with its offset."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def summary(*, id: int, status: str, category: str | None, confidence: float | None, needs_review: bool,
            subject: str, address: str | None, name: str | None, assignee: str | None,
            language: str | None, received_at: dt.datetime | None) -> dict[str, Any]:
    """The summary object; ``address`` and ``name`` are the contact's (None without one)."""
    return {
        "id": id,
        "status": status,
        "category": category,
        "confidence": confidence,
        "needs_review": needs_review,
        "subject": subject,
        "from": address,
        "name": name,
        "assignee": assignee,
        "language": language,
        "received_at": iso(received_at),
    }


# --- the plain read ----------------------------------------------------------------------------

# The same statements ``intake.inquiries.queries.list_inquiries`` / ``count_inquiries`` run
# through the ORM (the contact is the ORM's lazy load, joined here): newest first, served by
# the indexes on inquiries (status, category, received_at).
_COLUMNS = ("id", "status", "category", "confidence", "needs_review", "subject", "address", "name",
            "assignee", "language", "received_at")
_SELECT = (
    "SELECT i.id, i.status, i.category, i.confidence, i.needs_review, i.subject, c.address, c.name,"
    " i.assignee, i.language, i.received_at"
    " FROM inquiries i LEFT JOIN contacts c ON c.id = i.contact_id"
)
_ORDER = " ORDER BY i.received_at DESC, i.id DESC"


def _where(status: str | None, category: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if status:
        clauses.append("i.status = ?")
        params.append(status)
    if category:
        clauses.append("i.category = ?")
        params.append(category)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(_COLUMNS, row))
    # SQLite keeps booleans as 0/1 and times as ISO text (SQLAlchemy reads them back with
    # fromisoformat, as here); PostgreSQL's driver hands back bool and aware datetime already.
    values["needs_review"] = bool(values["needs_review"])
    if isinstance(values["received_at"], str):
        values["received_at"] = dt.datetime.fromisoformat(values["received_at"])
    return summary(**values)


def read_page(conn: "PlainConnection", *, status: str | None = None, category: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
    """Summaries, newest first, as ``inquiry_summary(i) for i in list_inquiries(...)`` gives."""
    where, params = _where(status, category)
    sql = _SELECT + where + _ORDER
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    return [_from_row(row) for row in conn.rows(sql, params)]


def count(conn: "PlainConnection", *, status: str | None = None, category: str | None = None) -> int:
    """How many ``read_page`` would return without a limit (`intake list`'s "N more")."""
    where, params = _where(status, category)
    return conn.rows("SELECT count(*) FROM inquiries i" + where, params)[0][0]
