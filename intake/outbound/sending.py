"""Sending one stored outbound message exactly once, and recording what happened.

The message was built completely when it was queued (fixed Message-ID, exact bytes) and its
``email.send`` delivery was owed in the same transaction (intake/outbox/). This module is that
delivery's body. State of the outbound row, for people to read: ``queued -> sending -> sent``, or
``failed`` (a permanent SMTP refusal, or still failing at the outbox's email deadline, 48 hours
by default), or ``suppressed`` (a rate cap held it back).

Exactly once, as far as SMTP allows:
- The outbox's claim (a lease on the delivery row) is committed before the SMTP transaction, so
  two workers never send the same row at the same time; ``sending`` is committed too.
- No transaction is open during the SMTP conversation.
- Transient failures (connection refused or dropped, timeouts, 4xx) put the row back to
  ``queued`` and the outbox retries with backoff for hours; after ``[outbox]
  email_delayed_after_minutes`` an ``smtp_delayed`` event says so in the card's thread once.
- The window that cannot be closed: the server accepted the message and we crashed, or the
  connection dropped after the final ``.`` of DATA before the server's answer arrived. The row is
  still ``sending`` and the delivery is retried with the *same bytes and Message-ID*: the one case
  where a byte-identical copy can reach the applicant, which their mail client threads onto the
  same conversation and many providers drop as a duplicate. We chose that over losing a staff
  reply. The "mark sent" write is retried a few times in-process first, which makes that window
  very small.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.events import record_event, record_events
from intake.inquiries.lifecycle import on_reply_sent
from intake.models import Inquiry, Message, utcnow
from intake.outbound.loops import outbound_history
from intake.outbound.options import LOGGED_ONLY_NOTE, OutboundOptions, load_options
from intake.outbound.smtp import Connection, DeliveryError, smtp_settings
from intake.outbox import GiveUp, Retry, Ticket, deliverer, lease_left, still_ours_many

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

MARK_SENT_TRIES = 3


@dataclass
class Prepared:
    state: str  # "ready", or the row's state when there is nothing to send now
    payload: dict[str, Any] | None = None


def _prepare(rt: "Runtime", message_ids: list[int], options: OutboundOptions) -> dict[int, Prepared]:
    """Check the caps and mark the rows ``sending`` (committed); return what each send needs.
    Several messages are checked in order against one read of the recipients' recent mail."""
    prepared: dict[int, Prepared] = {}
    with rt.db.session() as session:
        rows = {r.id: r for r in session.scalars(select(Message).where(Message.id.in_(message_ids)))}
        live = [r for r in rows.values() if r.direction == "outbound" and r.state not in ("sent", "suppressed", "failed")]
        window = max((cap.seconds for cap in options.config.caps), default=0)
        history = outbound_history(session, [r.to_address or "" for r in live], window)
        facts = []
        for message_id in message_ids:
            row = rows.get(message_id)
            if row is None or row.direction != "outbound":
                prepared[message_id] = Prepared("missing")
                continue
            if row.state in ("sent", "suppressed", "failed"):
                prepared[message_id] = Prepared(row.state)
                continue
            cap = history.cap_exceeded(row.to_address or "", options.config.caps, before_id=row.id)
            if cap is not None:
                # The hard ceiling applies to every kind of mail, staff replies included: more than
                # this to one address is a loop or a bug, and a person can always resend.
                row.state = "suppressed"
                row.last_error = f"rate cap: more than {cap.describe()} to this address"
                history.discard(row.to_address or "", row.id)  # held back: later ones do not count it
                facts.append((row.inquiry_id, "system", "cap_hit", dict(
                    message_id=row.id, to=row.to_address, cap=cap.describe(), kind=row.kind)))
                log.warning("outbound message %s to %s held back: %s", row.id, row.to_address, row.last_error)
                prepared[message_id] = Prepared("suppressed")
                continue
            row.state = "sending"
            row.attempts = (row.attempts or 0) + 1
            row.processed_at = utcnow()  # on an outbound row: when the current attempt began
            prepared[message_id] = Prepared("ready", {
                "id": row.id,
                "raw": row.raw,
                "to": row.to_address,
                # The SMTP envelope sender, where bounces go: our address, or "" (the null path <>)
                # for acknowledgments when the operator opts in.
                "envelope_from": (row.meta or {}).get("envelope_from", row.sender_address or options.from_address),
                "attempts": row.attempts,
                "message_id": row.message_id,
                "subject": row.subject,
                "inquiry_id": row.inquiry_id,
                "kind": row.kind,
            })
        if facts:
            record_events(session, facts)
    return prepared


def _record_sent(rt: "Runtime", sent: dict[int, str | None]) -> None:
    """Mark sent, and record what it means for each inquiry (events owe the card and thread)."""
    with rt.db.session() as session:
        rows = list(session.scalars(select(Message).where(Message.id.in_(list(sent))).order_by(Message.id)))
        inquiry_ids = {r.inquiry_id for r in rows if r.inquiry_id}
        inquiries = {i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(inquiry_ids)))} if inquiry_ids else {}
        now = utcnow()
        facts = []
        for row in rows:
            note = sent[row.id]
            row.state = "sent"
            row.sent_at = now
            row.last_error = None
            if note:
                row.meta = {**(row.meta or {}), "delivery": note}
            inquiry = inquiries.get(row.inquiry_id) if row.inquiry_id else None
            if inquiry is None:
                continue
            logged = {"logged_only": True} if note else {}
            if row.kind == "acknowledgment":
                facts.append((inquiry.id, "system", "ack_sent", dict(
                    message_id=row.id, to=row.to_address, answer=(row.meta or {}).get("answer_key"), **logged)))
            else:  # a staff reply (kind "reply" or any other a person sent)
                on_reply_sent(inquiry, now)
                facts.append((inquiry.id, row.author or "system", "reply_sent", dict(
                    message_id=row.id, to=row.to_address, subject=row.subject, **logged)))
        record_events(session, facts)


def _back_to_queued(rt: "Runtime", errors: dict[int, str]) -> None:
    with rt.db.session() as session:
        for row in session.scalars(select(Message).where(Message.id.in_(list(errors)))):
            if row.state == "sending":
                row.state = "queued"
                row.last_error = errors[row.id][:2000]


def _gave_up(session: Session, ticket: Ticket, error: str) -> None:
    """The outbox stopped retrying: the row is failed and staff see it on the card."""
    row = session.get(Message, int(ticket.args["message_id"]))
    if row is None:
        return
    row.state = "failed"
    row.last_error = error[:2000]
    record_event(session, row.inquiry_id, "system", "send_failed", message_id=row.id, to=row.to_address,
                 attempts=row.attempts, error=row.last_error)


def _delayed(session: Session, ticket: Ticket, error: str) -> None:
    row = session.get(Message, int(ticket.args["message_id"]))
    if row is None:
        return
    record_event(session, row.inquiry_id, "system", "smtp_delayed", message_id=row.id, to=row.to_address,
                 attempts=row.attempts, error=error[:500])


def _deliver_emails(rt: "Runtime", tickets: list[Ticket]) -> dict[int, Any]:
    by_message = {int(t.args["message_id"]): t for t in tickets}
    outcomes = send_many(rt, list(by_message), tickets=by_message)
    return {by_message[message_id].id: outcome for message_id, outcome in outcomes.items()}


@deliverer("email.send", channel="email", on_give_up=_gave_up, on_delayed=_delayed, batch=_deliver_emails)
def deliver_email(rt: "Runtime", ticket: Ticket) -> str:
    """Send outbound message row ``ticket.args["message_id"]`` (returns its resulting state)."""
    return send_message(rt, int(ticket.args["message_id"]), ticket=ticket)


def send_message(rt: "Runtime", message_id: int, *, ticket: Ticket | None = None) -> str:
    outcome = send_many(rt, [message_id], tickets={message_id: ticket} if ticket else None)[message_id]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def send_many(rt: "Runtime", message_ids: list[int], *, tickets: dict[int, Ticket] | None = None) -> dict[int, Any]:
    """Send these outbound rows over one SMTP connection; for each, its resulting state, or the
    exception its delivery meets (``GiveUp`` for a permanent refusal, ``Retry`` otherwise).

    Before the first message the leases are checked in the database (``still_ours_many``), and
    before each one by this process's clock (``lease_left``): a batch never outlives its claim.
    """
    options = load_options(rt.settings)
    prepared = _prepare(rt, message_ids, options)
    outcomes: dict[int, Any] = {}
    ready = [p.payload for p in prepared.values() if p.payload is not None]
    for message_id, p in prepared.items():
        if p.payload is None:
            log.info("outbound message %s not sent now: state %s", message_id, p.state)
            outcomes[message_id] = p.state
    tickets = tickets or {}
    held = still_ours_many(rt, [tickets[info["id"]] for info in ready if info["id"] in tickets])
    sent: dict[int, str | None] = {}
    transient: dict[int, str] = {}
    connection = None if options.log_only else Connection(
        rt.service("outbound.smtp", lambda rt: smtp_settings(rt.settings.smtp_url or "")))
    try:
        for info in ready:
            ticket = tickets.get(info["id"])
            if ticket is not None and (ticket.id not in held or not lease_left(rt, ticket)):
                outcomes[info["id"]] = Retry(f"delivery {ticket.key} outlived its lease; another attempt has it")
                continue
            if connection is None:
                log.info(
                    "SMTP_URL is unset: not sending message %s to %s (%s), Message-ID <%s>",
                    info["id"], info["to"], info["subject"], info["message_id"],
                )
                sent[info["id"]] = LOGGED_ONLY_NOTE  # one constant, read by `intake show` (was_logged_only)
                continue
            try:
                connection.send(info["envelope_from"], info["to"], info["raw"])
                sent[info["id"]] = None
            except DeliveryError as exc:
                log.warning("sending message %s via %s failed (attempt %s): %s",
                            info["id"], connection.cfg.describe(), info["attempts"], exc)
                if exc.permanent:
                    outcomes[info["id"]] = GiveUp(str(exc))
                else:
                    transient[info["id"]] = str(exc)
                    outcomes[info["id"]] = Retry(str(exc))
    finally:
        if connection is not None:
            connection.close()
    if transient:
        _back_to_queued(rt, transient)
    if sent:
        _mark_sent(rt, sent)
        outcomes.update({message_id: "sent" for message_id in sent})
    return {message_id: outcomes[message_id] for message_id in message_ids}


def _mark_sent(rt: "Runtime", sent: dict[int, str | None]) -> None:
    """The "mark sent" write is retried a few times in-process: the mail is out, and a row left
    ``sending`` would be sent again (byte-identical) by the outbox's retry."""
    for attempt in range(1, MARK_SENT_TRIES + 1):
        try:
            _record_sent(rt, sent)
            return
        except Exception:
            if attempt == MARK_SENT_TRIES:
                log.exception("messages %s were delivered but could not be marked sent", sorted(sent))
                raise
            time.sleep(0.5 * attempt)
