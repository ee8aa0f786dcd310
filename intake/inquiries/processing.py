"""Processing stored messages: parse, thread, classify, and record what happened.

The events recorded here (``received``, ``follow_up``, ``unparseable``) owe, in the same
transaction, the card, the thread line and the acknowledgment (see intake/outbox/dispatch.py):
a worker killed after this commit loses none of them.

Messages are processed in batches when several are waiting (``claim_received`` +
``process_messages``): one transaction, the database asked once per batch for contacts and
threads, the classifier run on all new inquiries at once, and the rows written with one
statement per table. A batch gives the same inquiries as one message at a time, in order
(intake/inquiries/threads.py decides later messages knowing what earlier ones did); a single
message is a batch of one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from intake import mail
from intake.events import record_events
from intake.inquiries.common import SYSTEM
from intake.inquiries.lifecycle import follow_up, follow_up_detail
from intake.inquiries.threads import contact_ids_for, find_threads
from intake.mail.types import ParsedEmail, UnparseableMessage
from intake.models import Attachment, Classification, Inquiry, Message, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.classify import Verdict
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A message whose processing failed this many times is no longer picked up by batches; it is
# retried alone, when asked for by id (the sweeper, a retried job), so it cannot stall the rest.
MAX_BATCH_ATTEMPTS = 3


@dataclass(frozen=True)
class ProcessResult:
    status: str  # new, follow-up, unparseable
    inquiry_id: int
    message_id: int


def claim_received(session: Session, *, limit: int, first_id: int | None = None) -> list[Message]:
    """Lock and load up to ``limit`` stored messages waiting to be processed, oldest first, plus
    ``first_id`` when it is waiting too. On PostgreSQL rows another worker holds are skipped
    (``SKIP LOCKED``), so workers share a backlog; SQLite's write transaction is exclusive."""
    waiting = (
        select(Message.id)
        .where(Message.state == "received", Message.attempts < MAX_BATCH_ATTEMPTS)
        .order_by(Message.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    wanted = Message.id.in_(waiting) if first_id is None else or_(Message.id == first_id, Message.id.in_(waiting))
    query = (
        select(Message)
        .where(wanted, Message.state == "received")
        .order_by(Message.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))[: limit + 1]


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


def _fallback_verdict(rt: "Runtime", exc: Exception) -> "Verdict":
    from intake import classify

    names = rt.settings.category_names
    return classify.Verdict(
        category="general" if "general" in names else names[0],
        confidence=0.0,
        source="rule",
        reasons=[f"classifier error: {exc.__class__.__name__}"],
        model_version=None,
        needs_review=True,
        automated=False,
    )


def _classify(rt: "Runtime", items: Sequence[tuple[ParsedEmail, dict[str, Any] | None]]) -> list["Verdict"]:
    """The classifier's verdicts, in one call for the batch; a classifier failure never loses a
    message (it is filed as general, for review)."""
    from intake import classify

    if not items:
        return []
    try:
        docs = [classify.Document.from_parsed(parsed, meta) for parsed, meta in items]
        return classify.get_classifier(rt).classify_many(docs)
    except Exception as exc:
        log.exception("classification failed; filing as general for review")
        return [_fallback_verdict(rt, exc) for _ in items]


def _language(rt: "Runtime", parsed: ParsedEmail) -> str | None:
    """The language of the latest reply; a detector failure never loses a message."""
    from intake import classify

    try:
        return classify.detect_language(parsed.latest_reply or parsed.text or "", rt.settings)
    except Exception:  # pragma: no cover
        log.exception("language detection failed")
        return None


def _parse(rt: "Runtime", message: Message) -> tuple[ParsedEmail | None, str | None]:
    """(parsed, None) or (None, why it cannot be parsed): the parser must never lose a message."""
    try:
        return mail.parse(message.raw, max_attachment_bytes=rt.settings.max_attachment_bytes), None
    except UnparseableMessage as exc:
        return None, str(exc)
    except Exception as exc:  # the parser must never crash; if it does, keep the message anyway
        log.exception("parser crashed on message %s", message.id)
        return None, f"parser error: {exc.__class__.__name__}: {exc}"


def _new_inquiry(parsed: ParsedEmail, message: Message, verdict: "Verdict", contact_id: int | None,
                 language: str | None, now) -> Inquiry:
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
    return inquiry


def _unparseable_inquiry(message: Message, now) -> Inquiry:
    """An unparseable message is kept and put in front of staff as its own inquiry."""
    return Inquiry(
        subject="(unparseable message)",
        thread_subject="",
        status="new",
        category=None,
        needs_review=True,
        received_at=message.created_at or now,
        last_message_at=now,
    )


def process_messages(session: Session, rt: "Runtime", messages: Sequence[Message]) -> list[ProcessResult]:
    """Parse, thread and classify these stored messages (locked, not yet processed), in order,
    in the caller's transaction; returns one result per message."""
    settings = rt.settings
    now = utcnow()
    parsed: list[ParsedEmail | None] = []
    errors: dict[int, str] = {}
    for index, message in enumerate(messages):
        found, error = _parse(rt, message)
        parsed.append(found)
        if error is not None:
            errors[index] = error
    languages = [_language(rt, p) if p is not None else None for p in parsed]

    with session.no_autoflush:  # each row is written once, at the end
        contacts = contact_ids_for(session, [(p.sender.address, p.sender.name) for p in parsed
                                             if p is not None and p.sender and p.sender.address])
        choices = find_threads(session, parsed, own_address=settings.from_address, now=now,
                               message_ids=[m.id for m in messages])
    opening = [i for i, p in enumerate(parsed) if p is not None and choices[i].is_new]
    verdicts = dict(zip(opening, _classify(rt, [(parsed[i], messages[i].meta) for i in opening])))

    created: dict[int, Inquiry] = {}
    for index, message in enumerate(messages):
        if index in errors:
            created[index] = _unparseable_inquiry(message, now)
        elif index in verdicts:
            p = parsed[index]
            assert p is not None
            contact_id = contacts.get(p.sender.address[:320]) if p.sender and p.sender.address else None
            created[index] = _new_inquiry(p, message, verdicts[index], contact_id, languages[index], now)
    session.add_all(created.values())
    session.flush()  # the new inquiries' ids, in one INSERT

    facts: list[tuple[int | None, str, str, dict[str, Any]]] = []
    results: list[ProcessResult] = []
    for index, message in enumerate(messages):
        p = parsed[index]
        if p is None:
            inquiry = created[index]
            message.parse_status = "unparseable"
            message.parse_error = errors[index][:2000]
            facts.append((inquiry.id, SYSTEM, "unparseable", {"message_id": message.id, "error": errors[index][:500]}))
            results.append(ProcessResult("unparseable", inquiry.id, message.id))
        else:
            if index in created:
                inquiry = created[index]
                verdict = verdicts[index]
                session.add(Classification(
                    inquiry_id=inquiry.id, message_id=message.id, category=verdict.category,
                    confidence=verdict.confidence, source=verdict.source,
                    model_version=verdict.model_version, reasons=list(verdict.reasons),
                ))
                facts.append((inquiry.id, SYSTEM, "received", {"message_id": message.id, "category": verdict.category}))
                results.append(ProcessResult("new", inquiry.id, message.id))
            else:
                choice = choices[index]
                inquiry = choice.inquiry if choice.inquiry is not None else created[choice.same_as]
                reopened = follow_up(inquiry, automated=p.automation.automated, now=now)
                facts.append((inquiry.id, SYSTEM, "follow_up", follow_up_detail(message.id, reopened)))
                results.append(ProcessResult("follow-up", inquiry.id, message.id))
            _fill_message(session, message, p, settings.max_attachment_bytes)
            message.language = languages[index]
        message.inquiry_id = inquiry.id
        message.state = "processed"
        message.processed_at = now
    record_events(session, facts)  # flushes the rows above with the events, then owes
    return results


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
    return process_messages(session, rt, [message])[0]


def record_failure(session: Session, message_id: int, error: str) -> None:
    """Count a failed attempt at processing a message (batches skip it after a few)."""
    session.execute(
        update(Message).where(Message.id == message_id, Message.state == "received")
        .values(attempts=Message.attempts + 1, last_error=error[:2000])
        .execution_options(synchronize_session=False)
    )


def result_for(session: Session, message_id: int) -> ProcessResult | None:
    """What processing made of a message, if it has been processed."""
    message = session.get(Message, message_id)
    if message is None or message.state != "processed" or message.inquiry_id is None:
        return None
    return _result_for_processed(session, message)


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
