"""Processing a stored message: parse, thread, classify, and record what happened.

The events recorded here (``received``, ``follow_up``, ``unparseable``) owe, in the same
transaction, the card, the thread line and the acknowledgment (see intake/outbox/dispatch.py):
a worker killed after this commit loses none of them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake import mail, recipients
from intake.mail.authentication import SenderAuthentication, authenticate
from intake.events import record_event
from intake.inquiries.common import SYSTEM
from intake.inquiries.lifecycle import on_follow_up
from intake.inquiries.threads import contact_id_for, find_thread
from intake.mail.types import ParsedEmail, UnparseableMessage
from intake.models import Attachment, Classification, Inquiry, Message, utcnow
from intake.sla import clock as sla_clock

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)


# store_raw(meta=ARRIVAL_FROM_DATE) (`intake ingest --received-from-date`): the message's own
# Date: is its arrival time, for importing an old mailbox with its real dates and targets.
ARRIVAL_FROM_DATE = {"arrival": "date"}


def arrival_time(message: Message, parsed: ParsedEmail | None) -> dt.datetime:
    """When a message reached us: when it was stored, or its ``Date:`` when it was imported with
    ARRIVAL_FROM_DATE (never later than it was stored: a Date: in the future is a wrong clock)."""
    stored = message.created_at or utcnow()
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=dt.timezone.utc)
    if (message.meta or {}).get("arrival") == ARRIVAL_FROM_DATE["arrival"] and parsed is not None and parsed.date:
        date = parsed.date if parsed.date.tzinfo else parsed.date.replace(tzinfo=dt.timezone.utc)
        # In UTC: SQLite keeps the wall-clock digits of a datetime and drops its offset.
        return min(date, stored).astimezone(dt.timezone.utc)
    return stored


@dataclass(frozen=True)
class ProcessResult:
    status: str  # new, follow-up, unparseable
    inquiry_id: int
    message_id: int


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
    message.parse_status = "partial" if parsed.partial else "parsed"
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



@dataclass
class _Prepared:
    """What processing computes from the stored bytes alone, before any lock is taken."""

    parsed: ParsedEmail | None
    error: str | None = None  # why the message is unparseable
    language: str | None = None
    authentication: SenderAuthentication | None = None


def _prepare(rt: "Runtime", raw: bytes, meta: dict[str, Any] | None, message_id: int) -> _Prepared:
    """Parse, detect the language and read the sender authentication: all CPU work, bounded by
    the parser's time budget, and none of it may run while a write lock is held."""
    try:
        parsed = mail.parse(raw, max_attachment_bytes=rt.settings.max_attachment_bytes)
    except UnparseableMessage as exc:
        return _Prepared(None, str(exc))
    except Exception as exc:  # the parser must never crash; if it does, keep the message anyway
        log.exception("parser crashed on message %s", message_id)
        return _Prepared(None, f"parser error: {exc.__class__.__name__}: {exc}")
    return _Prepared(parsed, None, _language(rt, parsed), authenticate(parsed, meta, rt.settings.authserv_ids))


def _prepare_unlocked(rt: "Runtime", message_id: int) -> _Prepared | None:
    """The message read in a read-only session (no write lock on SQLite), then prepared with no
    transaction open; None when there is nothing to prepare (gone, or processed already).

    A slow message parsed inside the processing transaction would hold SQLite's write lock (and
    webhooks would answer 503 meanwhile)."""
    with rt.db.read_session() as reader:
        row = reader.execute(
            select(Message.raw, Message.meta, Message.state, Message.inquiry_id).where(Message.id == message_id)
        ).first()
    if row is None or (row.state == "processed" and row.inquiry_id is not None):
        return None
    return _prepare(rt, row.raw, row.meta, message_id)


def process_message(session: Session, rt: "Runtime", message_id: int) -> ProcessResult:
    """Parse, thread and classify one stored message. Idempotent: a processed one is reported.

    The parse happens before ``session`` opens its transaction (the caller passes a fresh one).
    """
    prepared = _prepare_unlocked(rt, message_id)
    query = select(Message).where(Message.id == message_id)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    message = session.scalars(query).one_or_none()
    if message is None:
        raise LookupError(f"no stored message {message_id}")
    if message.state == "processed" and message.inquiry_id is not None:
        return _result_for_processed(session, message)
    if prepared is None:  # its state changed between the read and the lock
        prepared = _prepare(rt, message.raw, message.meta, message.id)
    if prepared.parsed is None:
        return _file_unparseable(session, message, prepared.error or "unparseable")

    parsed, language, authentication = prepared.parsed, prepared.language, prepared.authentication
    with session.no_autoflush:  # the message row is written once, at the end
        result = _thread_or_open(session, rt, message, parsed, language, authentication)
    _fill_message(session, message, parsed, rt.settings.max_attachment_bytes)
    if authentication is not None:
        message.authentication = authentication.verdict
        message.authentication_reasons = authentication.reasons or None
    message.inquiry_id = result.inquiry_id
    message.language = language
    message.state = "processed"
    message.processed_at = utcnow()
    session.flush()
    return result


def _thread_or_open(
    session: Session, rt: "Runtime", message: Message, parsed: ParsedEmail, language: str | None,
    authentication: SenderAuthentication | None = None,
) -> ProcessResult:
    """Join the inquiry this message continues, or open a new classified one."""
    now = utcnow()
    sender = parsed.sender
    contact_id = contact_id_for(session, sender.address, sender.name) if sender and sender.address else None
    inquiry = find_thread(session, parsed, own_address=rt.settings.from_address, now=now, settings=rt.settings)
    if inquiry is not None:
        status_before = inquiry.status
        on_follow_up(session, inquiry, message.id, automated=parsed.automation.automated, now=now)
        if not parsed.automation.automated:  # a person wrote: a response is owed (intake.sla.clock)
            sla_clock.applicant_wrote(inquiry, sla_clock.policy(rt), arrival_time(message, parsed),
                                      reopened=inquiry.status != status_before)
        if authentication is not None and authentication.verdict == "fail":
            # Staff see it in the thread; where replies go does not change (intake.recipients).
            record_event(session, inquiry.id, SYSTEM, "sender_unverified", message_id=message.id,
                         address=sender.address if sender else None, reasons=authentication.reasons[:4],
                         reply_to=recipients.reply_address(session, inquiry.id))
        return ProcessResult("follow-up", inquiry.id, message.id)
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
        received_at=arrival_time(message, parsed),
        last_message_at=now,
    )
    if verdict.category == "spam":
        inquiry.status = "spam"
    elif inquiry.automated or verdict.category == "automated":
        inquiry.status = "closed"
        inquiry.closed_at = now
    sla_clock.start(inquiry, sla_clock.policy(rt), inquiry.received_at)  # response targets
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
    record_event(session, inquiry.id, SYSTEM, "received", message_id=message.id, category=verdict.category)
    return ProcessResult("new", inquiry.id, message.id)


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
    record_event(session, inquiry.id, SYSTEM, "unparseable", message_id=message.id, error=error[:500])
    return ProcessResult("unparseable", inquiry.id, message.id)


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
    return ProcessResult(status, message.inquiry_id, message.id)
