"""Storing raw bytes: the durable first step, before any answer or parsing (the hot path).

Only byte-identical bytes are a duplicate: a provider's retry re-sends the same bytes, while a
contact form that reuses one Message-ID for different messages sends different ones, and losing
those would be losing mail.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from email.utils import format_datetime, make_msgid
from typing import Any, Iterable, Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy import insert as sa_insert
from sqlalchemy.orm import Session

from intake import mail
from intake.models import Message, Receipt, utcnow


@dataclass(frozen=True)
class StoreResult:
    message_id: int
    duplicate: bool
    dedupe_key: str
    inquiry_id: int | None = None


def dedupe_key_for(raw: bytes) -> tuple[str, str]:
    """The key that makes a second delivery of the same bytes a duplicate, and their sha256."""
    digest = hashlib.sha256(raw).hexdigest()
    return "sha:" + digest, digest


def _rows(raw: bytes, provider: str, source: str, provider_event_id: str | None,
          meta: dict[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(dedupe key, message row, receipt row) for a delivery of ``raw``."""
    key, digest = dedupe_key_for(raw)
    now = utcnow()
    message_row = dict(
        direction="inbound",
        kind="email" if source == "email" else source,
        source=source,
        provider=provider,
        dedupe_key=key,
        message_id=mail.peek_message_id(raw),
        raw=raw,
        sha256=digest,
        size=len(raw),
        meta=meta or None,
        state="received",
        parse_status="pending",
        attempts=0,
        automated=False,
        created_at=now,
    )
    receipt_row = dict(
        provider=provider, provider_event_id=provider_event_id, size=len(raw), received_at=now
    )
    return key, message_row, receipt_row


def _combined_params(message_row: dict[str, Any], receipt_row: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the one-statement store (_PG_STORE_WITH_RECEIPT): the receipt's provider,
    size and time are the message's own."""
    meta = message_row["meta"]
    return {**message_row, "meta": json.dumps(meta) if meta else None,
            "provider_event_id": receipt_row["provider_event_id"]}


def store_raw(
    session: Session,
    raw: bytes,
    *,
    provider: str,
    source: str = "email",
    provider_event_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> StoreResult:
    """Keep the raw bytes and a receipt; a second delivery of the same bytes is a duplicate.

    Safe when two processes store the same message at once: the unique dedupe key makes one
    insert win, and the other turns into a ``duplicate`` receipt.
    """
    key, message_row, receipt_row = _rows(raw, provider, source, provider_event_id, meta)
    connection = session.connection()
    statements = _store_statements(connection.dialect.name)
    if statements.store_with_receipt is not None:
        # PostgreSQL: message and receipt in one round trip.
        found = connection.execute(statements.store_with_receipt, _combined_params(message_row, receipt_row)).first()
        if found is not None:
            duplicate = not found.inserted
            return StoreResult(found.id, duplicate, key, found.inquiry_id)
        # The row that beat us committed after this statement's snapshot: record it plainly.
    # One statement that either inserts or, when the key is taken, does nothing: the unique
    # index decides between two concurrent deliveries without a savepoint or a retry loop.
    new_id = connection.execute(statements.insert_message, message_row).scalar()
    if new_id is not None:
        outcome, message_id, inquiry_id = "stored", new_id, None
    else:
        existing = connection.execute(statements.find_message, {"key": key}).one()
        outcome, message_id, inquiry_id = "duplicate", existing.id, existing.inquiry_id
    connection.execute(
        statements.insert_receipt, {**receipt_row, "outcome": outcome, "message_id": message_id}
    )
    return StoreResult(message_id, outcome == "duplicate", key, inquiry_id)


def store_many(
    session: Session,
    deliveries: Sequence[tuple[bytes, str | None]],
    *,
    provider: str,
    meta: dict[str, Any] | None = None,
) -> list[StoreResult]:
    """``store_raw`` for many messages (``(raw, provider_event_id)`` each) in the caller's
    transaction, in three statements whatever their number: the messages (one INSERT, those
    whose bytes are stored already skipped by the unique key), the duplicates' rows, the
    receipts. `intake ingest` stores a chunk of files this way. Results in the given order; the
    same bytes twice in one call are stored once, the second a duplicate of the first.
    """
    if not deliveries:
        return []
    rows = [_rows(raw, provider, "email", event_id, meta) for raw, event_id in deliveries]
    first: dict[str, int] = {}  # dedupe key -> index of its first occurrence
    for index, (key, _, _) in enumerate(rows):
        first.setdefault(key, index)
    connection = session.connection()
    statements = _store_statements(connection.dialect.name)
    # Executed with a list of rows: one INSERT .. RETURNING ("insertmanyvalues"); the keys come
    # back for the rows inserted, the others clashed with bytes stored before.
    inserted = {row.dedupe_key: row.id for row in connection.execute(
        statements.insert_messages, [rows[index][1] for index in first.values()])}
    earlier = {}
    if len(inserted) < len(first):
        earlier = {row.dedupe_key: (row.id, row.inquiry_id) for row in connection.execute(
            statements.find_messages, {"keys": [key for key in first if key not in inserted]})}
    results: list[StoreResult] = []
    for index, (key, _, _) in enumerate(rows):
        if key in inserted:
            results.append(StoreResult(inserted[key], first[key] != index, key))
        else:
            message_id, inquiry_id = earlier[key]
            results.append(StoreResult(message_id, True, key, inquiry_id))
    connection.execute(statements.insert_receipt, [
        {**receipt_row, "outcome": "duplicate" if result.duplicate else "stored", "message_id": result.message_id}
        for (_, _, receipt_row), result in zip(rows, results)
    ])
    return results


def store_raw_direct(
    cursor: Any,
    raw: bytes,
    *,
    provider: str,
    provider_event_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> StoreResult:
    """``store_raw`` on a PostgreSQL cursor in autocommit mode (Database.direct): the webhook's
    hot path, one statement that is its own transaction, so the bytes are committed when it
    returns. Same rows and the same answers as ``store_raw``."""
    key, message_row, receipt_row = _rows(raw, provider, "email", provider_event_id, meta)
    sql = _direct_sql()
    cursor.execute(sql.store_with_receipt, _combined_params(message_row, receipt_row))
    found = cursor.fetchone()
    if found is not None:
        message_id, inquiry_id, inserted = found
        return StoreResult(message_id, not inserted, key, inquiry_id)
    # The winner committed after this statement's snapshot was taken: it is a duplicate now
    # (each statement below is its own transaction, and both are safe to repeat).
    cursor.execute(sql.find_message, {"key": key})
    message_id, inquiry_id = cursor.fetchone()
    cursor.execute(sql.insert_receipt, {**receipt_row, "outcome": "duplicate", "message_id": message_id})
    return StoreResult(message_id, True, key, inquiry_id)


@dataclass(frozen=True)
class _StoreStatements:
    insert_message: Any
    find_message: Any
    insert_receipt: Any
    insert_messages: Any
    find_messages: Any
    store_with_receipt: Any = None


# The same work as insert_message + find_message + insert_receipt in one PostgreSQL statement.
# A key whose winning row committed after this statement began yields no row (its snapshot
# cannot see it); store_raw then falls back to the separate statements.
_PG_STORE_WITH_RECEIPT = """
WITH inserted AS (
    INSERT INTO messages (direction, kind, source, provider, dedupe_key, message_id, raw, sha256,
                          size, meta, state, parse_status, attempts, automated, created_at)
    VALUES (:direction, :kind, :source, :provider, :dedupe_key, :message_id, :raw, :sha256,
            :size, CAST(:meta AS JSON), :state, :parse_status, :attempts, :automated, :created_at)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id, inquiry_id
), found AS (
    SELECT id, inquiry_id, true AS inserted FROM inserted
    UNION ALL
    SELECT id, inquiry_id, false AS inserted FROM messages
    WHERE dedupe_key = :dedupe_key AND NOT EXISTS (SELECT 1 FROM inserted)
), receipt AS (
    INSERT INTO receipts (provider, provider_event_id, outcome, message_id, size, received_at)
    SELECT :provider, :provider_event_id,
           CASE WHEN found.inserted THEN 'stored' ELSE 'duplicate' END,
           found.id, :size, :created_at
    FROM found
)
SELECT id, inquiry_id, inserted FROM found
"""


def _dialect_insert(dialect: str):
    """INSERT with ON CONFLICT support: both of our databases have it, spelled per dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


@functools.lru_cache(maxsize=None)
def _store_statements(dialect: str) -> _StoreStatements:
    """Core statements for the webhook's hot path, built once per dialect.

    Plain table statements skip the ORM's per-call bookkeeping, which measured about half the
    cost of storing a message (docs/benchmarks.md).
    """
    insert = _dialect_insert(dialect)
    messages, receipts = Message.__table__, Receipt.__table__
    return _StoreStatements(
        insert_message=insert(messages)
        .on_conflict_do_nothing(index_elements=[messages.c.dedupe_key])
        .returning(messages.c.id),
        find_message=select(messages.c.id, messages.c.inquiry_id).where(
            messages.c.dedupe_key == bindparam("key")
        ),
        insert_receipt=sa_insert(receipts),
        insert_messages=insert(messages)
        .on_conflict_do_nothing(index_elements=[messages.c.dedupe_key])
        .returning(messages.c.id, messages.c.dedupe_key),
        find_messages=select(messages.c.id, messages.c.inquiry_id, messages.c.dedupe_key).where(
            messages.c.dedupe_key.in_(bindparam("keys", expanding=True))
        ),
        store_with_receipt=text(_PG_STORE_WITH_RECEIPT) if dialect == "postgresql" else None,
    )


@dataclass(frozen=True)
class _DirectSql:
    store_with_receipt: str
    find_message: str
    insert_receipt: str


@functools.lru_cache(maxsize=1)
def _direct_sql() -> _DirectSql:
    """The store statements compiled once for psycopg's parameter style (%(name)s), so the
    direct path runs the very SQL the session path runs."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    statements = _store_statements("postgresql")
    dialect = PGDialect_psycopg()
    receipt_columns = ["provider", "provider_event_id", "size", "received_at", "outcome", "message_id"]
    return _DirectSql(
        str(statements.store_with_receipt.compile(dialect=dialect)),
        str(statements.find_message.compile(dialect=dialect)),
        str(statements.insert_receipt.compile(dialect=dialect, column_keys=receipt_columns)),
    )


# Anything shaped like an address, for record_receipt (broad on purpose: a false hit costs a word).
LEDGER_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")


def record_receipt(
    session: Session,
    provider: str,
    outcome: str,
    *,
    provider_event_id: str | None = None,
    size: int | None = None,
    detail: str | None = None,
    message_id: int | None = None,
) -> Receipt:
    """Log a delivery attempt that stored nothing (refused, malformed, too large).

    The ledger proves what arrived without keeping who wrote it: an address in ``detail`` (an
    error quoting a header) is replaced, so an erased person cannot linger here (intake.privacy).
    """
    receipt = Receipt(
        provider=provider,
        provider_event_id=provider_event_id,
        outcome=outcome,
        size=size,
        detail=LEDGER_ADDRESS.sub("[address]", detail or "")[:2000] or None,
        message_id=message_id,
    )
    session.add(receipt)
    session.flush()
    return receipt


def _from_header(address: str, name: str) -> str:
    """`Name <address>`, quoted as needed; an address the email package rejects is replaced."""
    from email.headerregistry import Address

    local, at, domain = address.rpartition("@")
    try:
        if not (local and at and domain) or any(ch.isspace() for ch in address):
            raise ValueError(address)
        # username/domain rather than addr_spec: an internationalized local part stays valid.
        return str(Address(display_name=name, username=local, domain=domain))
    except Exception:  # malformed or empty address: keep the name, mark the sender unknown
        return str(Address(display_name=name, addr_spec="unknown@invalid"))


def synthesize_message(
    *,
    subject: str,
    body: str,
    sender_address: str,
    sender_name: str | None = None,
    date: dt.datetime | None = None,
    headers: Iterable[tuple[str, str]] | None = None,
    message_id: str | None = None,
) -> bytes:
    """RFC 822 bytes for an inquiry that did not arrive as email, so it takes the same path.

    Built by the same synthesizer as providers' parsed-mode deliveries: every value is untrusted
    and no CR/LF reaches a header.
    """
    from intake.mail.synthesize import header_value, synthesize

    ours = [
        ("From", _from_header(header_value(sender_address or ""), header_value(sender_name or ""))),
        ("Subject", header_value(subject or "")[:900]),
        ("Date", format_datetime(date or utcnow())),
        ("Message-ID", message_id or make_msgid(domain="intake.invalid")),
    ]
    taken = {name.lower() for name, _ in ours}
    extra = [(k, str(v)[:900]) for k, v in headers or () if (k or "").strip().lower() not in taken]
    raw, _dropped = synthesize([*ours, *extra], text=body or "")
    return raw
