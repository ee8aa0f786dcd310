"""The inquiry lifecycle: store a message, thread it, classify it, and every staff action after.

This is the domain: it knows the store and the mail layer, and nothing about Flask or Slack.
Every function takes an open ``Session``; the caller owns the transaction (one per request or
job). Staff actions return the ``Event`` they recorded so an adapter can show it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy import insert as sa_insert
from sqlalchemy.orm import Session

from intake import mail
from intake.mail.types import ParsedEmail, UnparseableMessage
from intake.models import (
    Attachment,
    Classification,
    Contact,
    Event,
    Inquiry,
    Message,
    Receipt,
    utcnow,
)

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

SYSTEM = "system"
FALLBACK_THREAD_WINDOW = dt.timedelta(days=30)
# Categories whose inquiries are not worked one by one (the Slack digest counts them instead).
QUIET_CATEGORIES = ("spam", "automated")


class InquiryNotFound(LookupError):
    pass


class InvalidAction(ValueError):
    """A staff action that does not apply (unknown category, note without text...)."""


# --------------------------------------------------------------------------------------------
# Storing raw bytes: the durable first step, before any answer or parsing.


@dataclass(frozen=True)
class StoreResult:
    message_id: int
    duplicate: bool
    dedupe_key: str
    inquiry_id: int | None = None


def dedupe_key_for(raw: bytes, message_id: str | None) -> tuple[str, str]:
    """The key that makes a second delivery of the same message a duplicate, and the sha256."""
    digest = hashlib.sha256(raw).hexdigest()
    if message_id:
        if len(message_id) > 900:
            return "midsha:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest(), digest
        return "mid:" + message_id, digest
    return "sha:" + digest, digest


def store_raw(
    session: Session,
    raw: bytes,
    *,
    provider: str,
    source: str = "email",
    provider_event_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> StoreResult:
    """Keep the raw bytes and a receipt; a second delivery of the same message is a duplicate.

    Safe when two processes store the same message at once: the unique dedupe key makes one
    insert win, and the other turns into a ``duplicate`` receipt.
    """
    message_header_id = mail.peek_message_id(raw)
    key, digest = dedupe_key_for(raw, message_header_id)
    now = utcnow()
    connection = session.connection()
    statements = _store_statements(connection.dialect.name)
    message_row = dict(
        direction="inbound",
        kind="email" if source == "email" else source,
        source=source,
        provider=provider,
        dedupe_key=key,
        message_id=message_header_id,
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
    if statements.store_with_receipt is not None:
        # PostgreSQL: message and receipt in one round trip (the webhook's hot path).
        found = connection.execute(
            statements.store_with_receipt,
            {**message_row, "meta": json.dumps(meta) if meta else None,
             **{f"r_{k}": v for k, v in receipt_row.items()}},
        ).first()
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


@dataclass(frozen=True)
class _StoreStatements:
    insert_message: Any
    find_message: Any
    insert_receipt: Any
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
    SELECT :r_provider, :r_provider_event_id,
           CASE WHEN found.inserted THEN 'stored' ELSE 'duplicate' END,
           found.id, :r_size, :r_received_at
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
        store_with_receipt=text(_PG_STORE_WITH_RECEIPT) if dialect == "postgresql" else None,
    )


_LEDGER_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")


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
        detail=_LEDGER_ADDRESS.sub("[address]", detail or "")[:2000] or None,
        message_id=message_id,
    )
    session.add(receipt)
    session.flush()
    return receipt


# --------------------------------------------------------------------------------------------
# Processing a stored message: parse, thread, classify.


@dataclass
class ProcessResult:
    status: str  # new, follow-up, unparseable
    inquiry_id: int
    message_id: int
    # Jobs to enqueue once the caller has committed: (name, args).
    followups: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def _contact_id(session: Session, address: str, name: str | None) -> int:
    """The contact for an address, created on first sight (safe when two jobs race)."""
    address = address[:320]
    found = session.execute(select(Contact.id, Contact.name).where(Contact.address == address)).first()
    if found is not None:
        if name and not found.name:
            session.execute(
                Contact.__table__.update().where(Contact.id == found.id).values(name=name[:320])
            )
        return found.id
    insert = _dialect_insert(session.connection().dialect.name)
    new_id = session.execute(
        insert(Contact.__table__)
        .values(address=address, name=(name or None) and name[:320], created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["address"])
        .returning(Contact.__table__.c.id)
    ).scalar()
    if new_id is None:  # another job created it a moment ago
        new_id = session.scalar(select(Contact.id).where(Contact.address == address))
    return new_id


def is_participant(session: Session, inquiry: Inquiry, addresses: set[str], own_address: str | None) -> bool:
    """Whether any of these addresses already takes part in the inquiry: its contact, or the
    sender, reply-to, recipient or cc of one of its messages (never our own address).

    Asked with targeted queries, so a long conversation costs no more than a short one.
    """
    addresses = {a for a in addresses if a}
    if own_address:
        addresses.discard(mail.normalize_address(own_address))
    if not addresses:
        return False
    if inquiry.contact is not None and inquiry.contact.address in addresses:
        return True
    direct = session.scalar(
        select(Message.id)
        .where(
            Message.inquiry_id == inquiry.id,
            or_(
                Message.sender_address.in_(addresses),
                Message.reply_to.in_(addresses),
                Message.to_address.in_(addresses),
            ),
        )
        .limit(1)
    )
    if direct is not None:
        return True
    # Recipients are a JSON list (portable across SQLite and PostgreSQL): read the latest few.
    recent = session.scalars(
        select(Message.recipients)
        .where(Message.inquiry_id == inquiry.id, Message.recipients.is_not(None))
        .order_by(Message.id.desc())
        .limit(50)
    )
    return any(addresses.intersection(r for r in recipients or [] if isinstance(r, str)) for recipients in recent)


def find_thread(
    session: Session, parsed: ParsedEmail, *, own_address: str | None = None, now: dt.datetime | None = None
) -> Inquiry | None:
    """The inquiry this message continues, or None for a new one.

    A reference (In-Reply-To/References or an ``[#ID]`` subject token) joins only when the sender
    is already a participant: other help desks learned that strangers' mail gets merged into the
    wrong ticket otherwise. The fallback joins the same sender's inquiry with the same subject
    (after stripping Re:/Fwd:/AW:/SV:...) seen within 30 days.
    """
    sender = parsed.sender.address if parsed.sender else ""
    if not sender:
        return None
    reply_to = parsed.reply_to.address if parsed.reply_to else ""
    candidates: list[Inquiry] = []
    token = mail.find_ticket_token(parsed.subject or "")
    if token is not None:
        inquiry = session.get(Inquiry, token)
        if inquiry is not None:
            candidates.append(inquiry)
    refs = [r for r in [parsed.in_reply_to, *reversed(parsed.references)] if r]
    if refs:
        rows = session.execute(
            select(Message.inquiry_id)
            .where(Message.message_id.in_(refs[:100]), Message.inquiry_id.is_not(None))
            .order_by(Message.id.desc())
        ).all()
        for (inquiry_id,) in rows:
            inquiry = session.get(Inquiry, inquiry_id)
            if inquiry is not None and inquiry not in candidates:
                candidates.append(inquiry)
    for inquiry in candidates:
        if is_participant(session, inquiry, {sender, reply_to}, own_address):
            return inquiry
    subject_key = mail.thread_subject(parsed.subject or "")
    if subject_key:
        since = (now or utcnow()) - FALLBACK_THREAD_WINDOW
        return session.scalars(
            select(Inquiry)
            .join(Contact, Inquiry.contact_id == Contact.id)
            .where(
                Contact.address == sender,
                Inquiry.thread_subject == subject_key[:500],
                Inquiry.last_message_at >= since,
            )
            .order_by(Inquiry.last_message_at.desc())
            .limit(1)
        ).first()
    return None


def _fill_message(session: Session, message: Message, parsed: ParsedEmail, max_attachment_bytes: int) -> None:
    message.message_id = message.message_id or parsed.message_id
    message.in_reply_to = parsed.in_reply_to
    message.references = " ".join(parsed.references) or None
    message.sender_address = parsed.sender.address[:320] if parsed.sender else None
    message.sender_name = parsed.sender.name if parsed.sender else None
    message.reply_to = parsed.reply_to.address[:320] if parsed.reply_to else None
    message.recipients = [a.address for a in [*parsed.to, *parsed.cc] if a.address] or None
    message.subject = parsed.subject
    message.date = parsed.date
    message.text_body = parsed.text
    message.latest_reply = parsed.latest_reply
    message.automated = parsed.automation.automated
    message.automation_reasons = list(parsed.automation.reasons) or None
    message.parse_status = "parsed"
    message.parse_error = "; ".join(parsed.defects)[:2000] or None
    for part in parsed.attachments:
        keep = not part.content_omitted and part.size <= max_attachment_bytes
        # Added by key rather than appended to message.attachments, which would load them first.
        session.add(
            Attachment(
                message_id=message.id,
                filename=part.filename,
                content_type=(part.content_type or "application/octet-stream")[:255],
                size=part.size,
                sha256=part.sha256,
                content=part.content if keep else None,
            )
        )


def _classify(rt: "Runtime", parsed: ParsedEmail, meta: dict[str, Any] | None):
    """The classifier's verdict; a classifier failure never loses a message."""
    from intake import classify

    try:
        return classify.get_classifier(rt).classify(classify.Document.from_parsed(parsed, meta))
    except Exception as exc:
        log.exception("classification failed; filing as general for review")
        return classify.Verdict(
            category="general" if "general" in rt.settings.category_names else rt.settings.category_names[0],
            confidence=0.0,
            source="rule",
            reasons=[f"classifier error: {exc.__class__.__name__}"],
            model_version=None,
            needs_review=True,
            automated=False,
        )


def _event(session: Session, inquiry: Inquiry | None, actor: str, kind: str, **detail: Any) -> Event:
    # By key, not relationship: appending to inquiry.events would load the whole history.
    event = Event(inquiry_id=inquiry.id if inquiry else None, actor=actor, kind=kind, detail=detail or None)
    session.add(event)  # flushed with the rest of the unit of work; its id is set by commit
    return event


def process_message(session: Session, rt: "Runtime", message_id: int) -> ProcessResult:
    """Parse, thread and classify one stored message. Idempotent: a processed one is reported."""
    query = select(Message).where(Message.id == message_id)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    message = session.scalars(query).one_or_none()
    if message is None:
        raise LookupError(f"no stored message {message_id}")
    if message.state == "processed" and message.inquiry_id is not None:
        return _result_for_processed(session, message)

    settings = rt.settings
    try:
        parsed = mail.parse(message.raw, max_attachment_bytes=settings.max_attachment_bytes)
    except UnparseableMessage as exc:
        return _file_unparseable(session, message, str(exc))
    except Exception as exc:  # the parser must never crash; if it does, keep the message anyway
        log.exception("parser crashed on message %s", message.id)
        return _file_unparseable(session, message, f"parser error: {exc.__class__.__name__}: {exc}")

    language = _language(rt, parsed)
    with session.no_autoflush:  # the message row is written once, at the end
        result = _thread_or_open(session, rt, message, parsed, language)
    _fill_message(session, message, parsed, settings.max_attachment_bytes)
    message.inquiry_id = result.inquiry_id
    message.language = language
    message.state = "processed"
    message.processed_at = utcnow()
    session.flush()
    return result


def _thread_or_open(
    session: Session, rt: "Runtime", message: Message, parsed: ParsedEmail, language: str | None
) -> ProcessResult:
    """Join the inquiry this message continues, or open a new classified one."""
    now = utcnow()
    sender = parsed.sender
    contact_id = _contact_id(session, sender.address, sender.name) if sender and sender.address else None
    inquiry = find_thread(session, parsed, own_address=rt.settings.from_address, now=now)
    if inquiry is not None:
        inquiry.last_message_at = now
        if not parsed.automation.automated and inquiry.status in ("closed", "waiting"):
            previous = inquiry.status
            inquiry.status = "open"
            inquiry.closed_at = None
            if previous == "closed":
                _event(session, inquiry, SYSTEM, "reopened", reason="follow-up email")
        _event(session, inquiry, SYSTEM, "follow_up", message_id=message.id)
        return ProcessResult("follow-up", inquiry.id, message.id, [("slack.post_followup", (message.id,))])
    verdict = _classify(rt, parsed, message.meta)
    inquiry = Inquiry(
        contact_id=contact_id,
        subject=(parsed.subject or "")[:5000],
        thread_subject=mail.thread_subject(parsed.subject or "")[:500],
        status="new",
        category=verdict.category,
        confidence=verdict.confidence,
        needs_review=verdict.needs_review,
        automated=verdict.automated or parsed.automation.automated,
        language=language,
        received_at=message.created_at or now,
        last_message_at=now,
    )
    if verdict.category == "spam":
        inquiry.status = "spam"
    elif inquiry.automated or verdict.category == "automated":
        inquiry.status = "closed"
        inquiry.closed_at = now
    session.add(inquiry)
    session.flush()  # the inquiry's id, for the rows below
    session.add(
        Classification(
            inquiry_id=inquiry.id,
            message_id=message.id,
            category=verdict.category,
            confidence=verdict.confidence,
            source=verdict.source,
            model_version=verdict.model_version,
            reasons=list(verdict.reasons),
        )
    )
    _event(session, inquiry, SYSTEM, "received", message_id=message.id, category=verdict.category)
    return ProcessResult(
        "new",
        inquiry.id,
        message.id,
        [("slack.sync_card", (inquiry.id,)), ("outbound.acknowledge", (message.id,))],
    )


def _language(rt: "Runtime", parsed: ParsedEmail) -> str | None:
    """The language of the latest reply; a detector failure never loses a message."""
    from intake import classify

    try:
        return classify.detect_language(parsed.latest_reply or parsed.text or "", rt.settings)
    except Exception:  # pragma: no cover
        log.exception("language detection failed")
        return None


def _file_unparseable(session: Session, message: Message, error: str) -> ProcessResult:
    """Keep an unparseable message and put it in front of staff as its own inquiry."""
    now = utcnow()
    message.parse_status = "unparseable"
    message.parse_error = error[:2000]
    inquiry = Inquiry(
        subject="(unparseable message)",
        thread_subject="",
        status="new",
        category=None,
        needs_review=True,
        received_at=message.created_at or now,
        last_message_at=now,
    )
    session.add(inquiry)
    session.flush()
    message.inquiry_id = inquiry.id
    message.state = "processed"
    message.processed_at = now
    session.flush()
    _event(session, inquiry, SYSTEM, "unparseable", message_id=message.id, error=error[:500])
    return ProcessResult("unparseable", inquiry.id, message.id, [("slack.sync_card", (inquiry.id,))])


def _result_for_processed(session: Session, message: Message) -> ProcessResult:
    if message.parse_status == "unparseable":
        status = "unparseable"
    else:
        first = session.scalar(
            select(func.min(Message.id)).where(
                Message.inquiry_id == message.inquiry_id, Message.direction == "inbound"
            )
        )
        status = "new" if first == message.id else "follow-up"
    return ProcessResult(status, message.inquiry_id, message.id, [])


# --------------------------------------------------------------------------------------------
# Inquiries that arrive through Slack (email forwarding, "Log as inquiry", phone calls).


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


# --------------------------------------------------------------------------------------------
# Staff actions. Each records an audited Event with the actor's Slack user ID.


def get_inquiry(session: Session, inquiry_id: int) -> Inquiry:
    inquiry = session.get(Inquiry, inquiry_id)
    if inquiry is None:
        raise InquiryNotFound(f"no inquiry #{inquiry_id}")
    return inquiry


def claim(session: Session, inquiry_id: int, actor: str) -> Event:
    inquiry = get_inquiry(session, inquiry_id)
    previous = inquiry.assignee
    inquiry.assignee = actor
    if inquiry.status == "new":
        inquiry.status = "open"
    return _event(session, inquiry, actor, "claimed", previous=previous)


def assign(session: Session, inquiry_id: int, assignee: str | None, actor: str) -> Event:
    inquiry = get_inquiry(session, inquiry_id)
    previous = inquiry.assignee
    inquiry.assignee = assignee or None
    if assignee and inquiry.status == "new":
        inquiry.status = "open"
    return _event(session, inquiry, actor, "assigned", assignee=assignee, previous=previous)


def _staff_label(session: Session, inquiry: Inquiry, category: str, actor: str) -> None:
    """A person's label: the labelled row `intake train` learns from, and the inquiry's category."""
    from intake.classify import record_staff_label

    record_staff_label(session, inquiry.id, category, actor)
    inquiry.category = category
    inquiry.confidence = 1.0
    inquiry.needs_review = False


def reclassify(session: Session, inquiry_id: int, category: str, actor: str, *, categories: Iterable[str] | None = None) -> Event:
    """A staff correction: the new label trains the classifier at the next `intake train`."""
    if categories is not None and category not in set(categories):
        raise InvalidAction(f"unknown category {category!r}")
    inquiry = get_inquiry(session, inquiry_id)
    previous = inquiry.category
    _staff_label(session, inquiry, category, actor)
    if category == "spam":
        inquiry.status = "spam"
    elif inquiry.status == "spam":
        inquiry.status = "open"
    return _event(session, inquiry, actor, "reclassified", category=category, previous=previous)


def close(session: Session, inquiry_id: int, actor: str) -> Event:
    inquiry = get_inquiry(session, inquiry_id)
    inquiry.status = "closed"
    inquiry.closed_at = utcnow()
    return _event(session, inquiry, actor, "closed")


def reopen(session: Session, inquiry_id: int, actor: str) -> Event:
    inquiry = get_inquiry(session, inquiry_id)
    inquiry.status = "open"
    inquiry.closed_at = None
    return _event(session, inquiry, actor, "reopened")


def mark_spam(session: Session, inquiry_id: int, actor: str) -> Event:
    inquiry = get_inquiry(session, inquiry_id)
    previous = inquiry.category
    _staff_label(session, inquiry, "spam", actor)
    inquiry.status = "spam"
    return _event(session, inquiry, actor, "marked_spam", previous=previous)


def mark_not_spam(session: Session, inquiry_id: int, actor: str, *, category: str = "general") -> Event:
    """Restore a false positive (spam or automated) to the queue, as a staff label."""
    inquiry = get_inquiry(session, inquiry_id)
    previous = inquiry.category
    # The last label that was neither spam nor automated, or the given fallback.
    restored = next(
        (c.category for c in reversed(inquiry.classifications) if c.category not in QUIET_CATEGORIES),
        category,
    )
    _staff_label(session, inquiry, restored, actor)
    inquiry.status = "new" if inquiry.assignee is None else "open"
    inquiry.closed_at = None
    inquiry.automated = False
    return _event(session, inquiry, actor, "marked_not_spam", category=restored, previous=previous)


def add_note(session: Session, inquiry_id: int, text: str, actor: str) -> Event:
    """An internal note: kept with the inquiry, never sent to the applicant."""
    text = (text or "").strip()
    if not text:
        raise InvalidAction("a note needs some text")
    inquiry = get_inquiry(session, inquiry_id)
    raw = text.encode("utf-8")
    note = Message(
        inquiry=inquiry,
        direction="internal",
        kind="note",
        source="slack",
        dedupe_key=f"note:{uuid.uuid4().hex}",
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        text_body=text,
        latest_reply=text,
        parse_status="parsed",
        state="processed",
        author=actor,
        processed_at=utcnow(),
    )
    session.add(note)
    session.flush()
    return _event(session, inquiry, actor, "note", message_id=note.id)


# --------------------------------------------------------------------------------------------
# Reading: what `intake list` / `intake show` and the Slack queries print.


def list_inquiries(
    session: Session, *, status: str | None = None, category: str | None = None, limit: int | None = None
) -> list[Inquiry]:
    query = select(Inquiry).order_by(Inquiry.received_at.desc(), Inquiry.id.desc())
    if status:
        query = query.where(Inquiry.status == status)
    if category:
        query = query.where(Inquiry.category == category)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def inquiry_summary(inquiry: Inquiry) -> dict[str, Any]:
    contact = inquiry.contact
    return {
        "id": inquiry.id,
        "status": inquiry.status,
        "category": inquiry.category,
        "confidence": inquiry.confidence,
        "needs_review": inquiry.needs_review,
        "subject": inquiry.subject,
        "from": contact.address if contact else None,
        "name": contact.name if contact else None,
        "assignee": inquiry.assignee,
        "language": inquiry.language,
        "received_at": _iso(inquiry.received_at),
    }


def inquiry_detail(session: Session, inquiry_id: int) -> dict[str, Any]:
    inquiry = get_inquiry(session, inquiry_id)
    detail = inquiry_summary(inquiry)
    detail.update(
        first_response_at=_iso(inquiry.first_response_at),
        closed_at=_iso(inquiry.closed_at),
        messages=[
            {
                "id": m.id,
                "direction": m.direction,
                "kind": m.kind,
                "provider": m.provider,
                "message_id": m.message_id,
                "from": m.sender_address,
                "to": m.to_address,
                "subject": m.subject,
                "date": _iso(m.date),
                "received_at": _iso(m.created_at),
                "parse_status": m.parse_status,
                "parse_error": m.parse_error,
                "state": m.state,
                "language": m.language,
                "automated": m.automated,
                "automation_reasons": m.automation_reasons or [],
                "latest_reply": m.latest_reply,
                "sha256": m.sha256,
                "size": m.size,
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
                    for a in m.attachments
                ],
            }
            for m in inquiry.messages
        ],
        classifications=[
            {
                "category": c.category,
                "confidence": c.confidence,
                "source": c.source,
                "model_version": c.model_version,
                "reasons": c.reasons or [],
                "actor": c.actor,
                "at": _iso(c.created_at),
            }
            for c in inquiry.classifications
        ],
        events=[
            {"actor": e.actor, "kind": e.kind, "detail": e.detail or {}, "at": _iso(e.created_at)}
            for e in inquiry.events
        ],
    )
    return detail


def search_inquiries(session: Session, words: str | Sequence[str], *, limit: int = 20) -> list[Inquiry]:
    """Inquiries whose subject, sender or message text contain every word (case-insensitive).

    Portable LIKE matching rather than full-text search: it runs the same on SQLite and
    PostgreSQL, and the desk holds thousands of inquiries, not millions.
    """
    if isinstance(words, str):
        words = words.split()
    query = select(Inquiry).outerjoin(Contact, Inquiry.contact_id == Contact.id)
    for word in list(words)[:8]:
        w = word.lower()
        in_messages = select(Message.inquiry_id).where(
            or_(func.lower(Message.text_body).contains(w, autoescape=True),
                func.lower(Message.subject).contains(w, autoescape=True))
        )
        query = query.where(
            or_(
                func.lower(Inquiry.subject).contains(w, autoescape=True),
                func.lower(Contact.address).contains(w, autoescape=True),
                func.lower(func.coalesce(Contact.name, "")).contains(w, autoescape=True),
                Inquiry.id.in_(in_messages),
            )
        )
    query = query.order_by(Inquiry.received_at.desc(), Inquiry.id.desc()).limit(limit)
    return list(session.scalars(query))
