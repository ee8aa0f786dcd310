"""Processing stored messages: parse, thread, classify, and record what happened.

The events recorded here (``received``, ``follow_up``, ``unparseable``) owe, in the same
transaction, the card, the thread line and the acknowledgment (see intake/outbox/dispatch.py):
a worker killed after this commit loses none of them.

Messages are processed in batches when several are waiting (``waiting_messages``, then
``claim_received`` + ``process_messages``): the parse and every other piece of CPU work run
before the transaction opens, then one transaction asks the database once per batch for
contacts and threads, runs the classifier on all new inquiries at once and writes the rows with
one statement per table. A batch gives the same inquiries as one message at a time, in order
(intake/inquiries/threads.py decides later messages knowing what earlier ones did); a single
message is a batch of one.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from intake import mail, recipients
from intake.events import record_events
from intake.inquiries.common import SYSTEM
from intake.inquiries.lifecycle import follow_up, follow_up_detail
from intake.inquiries.threads import contact_ids_for, find_threads
from intake.mail.authentication import SenderAuthentication, authenticate
from intake.mail.types import ParsedEmail, UnparseableMessage
from intake.models import Attachment, Classification, Inquiry, Message, utcnow
from intake.sla import clock as sla_clock

if TYPE_CHECKING:  # pragma: no cover
    from intake.classify import Verdict
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A message whose processing failed this many times is no longer picked up by batches; it is
# retried alone, when asked for by id (the sweeper, a retried job), so it cannot stall the rest.
MAX_BATCH_ATTEMPTS = 3


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


@dataclass
class Prepared:
    """What processing computes from the stored bytes alone, before any lock is taken."""

    parsed: ParsedEmail | None
    error: str | None = None  # why the message is unparseable
    language: str | None = None
    authentication: SenderAuthentication | None = None


def prepare(rt: "Runtime", raw: bytes, meta: dict[str, Any] | None, message_id: int) -> Prepared:
    """Parse, detect the language and read the sender authentication: all CPU work, bounded by
    the parser's time budget, and none of it may run while a write lock is held."""
    try:
        parsed = mail.parse(raw, max_attachment_bytes=rt.settings.max_attachment_bytes)
    except UnparseableMessage as exc:
        return Prepared(None, str(exc))
    except Exception as exc:  # the parser must never crash; if it does, keep the message anyway
        log.exception("parser crashed on message %s", message_id)
        return Prepared(None, f"parser error: {exc.__class__.__name__}: {exc}")
    return Prepared(parsed, None, _language(rt, parsed), authenticate(parsed, meta, rt.settings.authserv_ids))


def waiting_messages(session: Session, *, limit: int, first_ids: Sequence[int] = (),
                     ids: Sequence[int] | None = None,
                     skip: Collection[int] = ()) -> list[tuple[int, bytes, dict[str, Any] | None]]:
    """(id, raw, meta) of up to ``limit`` stored messages waiting to be processed, oldest first,
    but none of ``skip`` (another worker claimed them), plus those of ``first_ids`` that are
    waiting too; or of those of ``ids`` that are waiting. Read without a lock, so that they are
    parsed with no transaction open (a slow message parsed inside one would hold SQLite's write
    lock, and webhooks would answer 503 meanwhile)."""
    if ids is not None:
        wanted = Message.id.in_(list(ids))
    else:
        oldest = select(Message.id).where(Message.state == "received", Message.attempts < MAX_BATCH_ATTEMPTS)
        if skip:
            oldest = oldest.where(Message.id.not_in(list(skip)))
        oldest = oldest.order_by(Message.created_at).limit(limit)
        wanted = Message.id.in_(oldest)
        if first_ids:
            wanted = or_(Message.id.in_(list(first_ids)), wanted)
    rows = session.execute(
        select(Message.id, Message.raw, Message.meta).where(wanted, Message.state == "received").order_by(Message.id)
    ).all()
    return [(row.id, row.raw, row.meta) for row in rows]


def claim_received(session: Session, ids: Sequence[int]) -> list[Message]:
    """Lock and load those of these messages that are still waiting, in order. On PostgreSQL rows
    another worker holds are skipped (``SKIP LOCKED``), so workers share a backlog; SQLite's
    write transaction is exclusive."""
    if not ids:
        return []
    return list(session.scalars(
        select(Message).where(Message.id.in_(list(ids)), Message.state == "received")
        .order_by(Message.id).with_for_update(skip_locked=True)
    ))


def _new_inquiry(rt: "Runtime", parsed: ParsedEmail, message: Message, verdict: "Verdict",
                 contact_id: int | None, language: str | None, now: dt.datetime) -> Inquiry:
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
    return inquiry


def _unparseable_inquiry(message: Message, now: dt.datetime) -> Inquiry:
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


def process_messages(session: Session, rt: "Runtime", messages: Sequence[Message],
                     prepared: dict[int, Prepared] | None = None) -> list[ProcessResult]:
    """Thread, classify and record these stored messages (locked, not yet processed), in order,
    in the caller's transaction; ``prepared`` holds what was computed before it opened (a
    message missing from it is prepared now). One result per message."""
    settings = rt.settings
    now = utcnow()
    ready = dict(prepared or {})
    for message in messages:
        if message.id not in ready:
            ready[message.id] = prepare(rt, message.raw, message.meta, message.id)
    parsed = [ready[m.id].parsed for m in messages]

    with session.no_autoflush:  # each row is written once, at the end
        contacts = contact_ids_for(session, [(p.sender.address, p.sender.name) for p in parsed
                                             if p is not None and p.sender and p.sender.address])
        choices = find_threads(session, parsed, own_address=settings.from_address, now=now,
                               message_ids=[m.id for m in messages], settings=settings)
    opening = [i for i, p in enumerate(parsed) if p is not None and choices[i].is_new]
    verdicts = dict(zip(opening, _classify(rt, [(parsed[i], messages[i].meta) for i in opening])))

    created: dict[int, Inquiry] = {}
    for index, message in enumerate(messages):
        p = parsed[index]
        if p is None:
            created[index] = _unparseable_inquiry(message, now)
        elif index in verdicts:
            contact_id = contacts.get(p.sender.address[:320]) if p.sender and p.sender.address else None
            created[index] = _new_inquiry(rt, p, message, verdicts[index], contact_id, ready[message.id].language, now)
    session.add_all(created.values())
    session.flush()  # the new inquiries' ids, in one INSERT

    facts: list[tuple[int | None, str, str, dict[str, Any]]] = []
    results: list[ProcessResult] = []
    for index, message in enumerate(messages):
        p, done = parsed[index], ready[message.id]
        if p is None:
            inquiry = created[index]
            message.parse_status = "unparseable"
            message.parse_error = (done.error or "unparseable")[:2000]
            facts.append((inquiry.id, SYSTEM, "unparseable",
                          {"message_id": message.id, "error": (done.error or "unparseable")[:500]}))
            results.append(ProcessResult("unparseable", inquiry.id, message.id))
        elif index in created:
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
            facts.extend(_follow_up(session, rt, inquiry, message, p, done.authentication, now))
            results.append(ProcessResult("follow-up", inquiry.id, message.id))
        if p is not None:
            _fill_message(session, message, p, settings.max_attachment_bytes)
            if done.authentication is not None:
                message.authentication = done.authentication.verdict
                message.authentication_reasons = done.authentication.reasons or None
            message.language = done.language
        message.inquiry_id = inquiry.id
        message.state = "processed"
        message.processed_at = now
    record_events(session, facts)  # flushes the rows above with the events, then owes
    return results


def _follow_up(session: Session, rt: "Runtime", inquiry: Inquiry, message: Message, parsed: ParsedEmail,
               authentication: SenderAuthentication | None, now: dt.datetime) -> list[tuple]:
    """A message continuing the inquiry: the lifecycle's follow-up rule, the response clock, and
    what staff must see; returns the facts to record."""
    status_before = inquiry.status
    reopened = follow_up(inquiry, automated=parsed.automation.automated, now=now)
    if not parsed.automation.automated:  # a person wrote: a response is owed (intake.sla.clock)
        sla_clock.applicant_wrote(inquiry, sla_clock.policy(rt), arrival_time(message, parsed),
                                  reopened=inquiry.status != status_before)
    facts = [(inquiry.id, SYSTEM, "follow_up", follow_up_detail(message.id, reopened))]
    if authentication is not None and authentication.verdict == "fail":
        # Staff see it in the thread; where replies go does not change (intake.recipients).
        sender = parsed.sender
        facts.append((inquiry.id, SYSTEM, "sender_unverified", dict(
            message_id=message.id, address=sender.address if sender else None,
            reasons=authentication.reasons[:4], reply_to=recipients.reply_address(session, inquiry.id))))
    return facts


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
    return process_messages(session, rt, [message], {message_id: prepared} if prepared is not None else None)[0]


def _prepare_unlocked(rt: "Runtime", message_id: int) -> Prepared | None:
    """The message read in a read-only session (no write lock on SQLite), then prepared with no
    transaction open; None when there is nothing to prepare (gone, or processed already)."""
    with rt.db.read_session() as reader:
        found = waiting_messages(reader, limit=1, ids=[message_id])
    if not found:
        return None
    _, raw, meta = found[0]
    return prepare(rt, raw, meta, message_id)


def _language(rt: "Runtime", parsed: ParsedEmail) -> str | None:
    """The language of the latest reply; a detector failure never loses a message."""
    from intake import classify

    try:
        return classify.detect_language(parsed.latest_reply or parsed.text or "", rt.settings)
    except Exception:  # pragma: no cover
        log.exception("language detection failed")
        return None


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
