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

from sqlalchemy.orm import Session

from intake.events import record_event
from intake.inquiries.lifecycle import on_reply_sent
from intake.models import Inquiry, Message, utcnow
from intake.outbound.loops import cap_exceeded
from intake.outbound.options import LOGGED_ONLY_NOTE, OutboundOptions, load_options
from intake.outbound.smtp import DeliveryError, deliver, smtp_settings
from intake.outbox import GiveUp, Retry, Ticket, deliverer, still_ours

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

MARK_SENT_TRIES = 3


@dataclass
class Prepared:
    state: str  # "ready", or the row's state when there is nothing to send now
    payload: dict[str, Any] | None = None


def _prepare(rt: "Runtime", message_id: int, options: OutboundOptions) -> Prepared:
    """Check the caps and mark the row ``sending`` (committed); return what the send needs."""
    with rt.db.session() as session:
        row = session.get(Message, message_id)
        if row is None or row.direction != "outbound":
            return Prepared("missing")
        if row.state in ("sent", "suppressed", "failed"):
            return Prepared(row.state)
        cap = cap_exceeded(session, row.to_address or "", options.config.caps, before_id=row.id)
        if cap is not None:
            # The hard ceiling applies to every kind of mail, staff replies included: more than
            # this to one address is a loop or a bug, and a person can always resend.
            row.state = "suppressed"
            row.last_error = f"rate cap: more than {cap.describe()} to this address"
            record_event(session, row.inquiry_id, "system", "cap_hit",
                         message_id=row.id, to=row.to_address, cap=cap.describe(), kind=row.kind)
            log.warning("outbound message %s to %s held back: %s", row.id, row.to_address, row.last_error)
            return Prepared("suppressed")
        row.state = "sending"
        row.attempts = (row.attempts or 0) + 1
        row.processed_at = utcnow()  # on an outbound row: when the current attempt began
        return Prepared("ready", {
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


def _record_sent(rt: "Runtime", message_id: int, note: str | None) -> None:
    """Mark sent, and record what it means for the inquiry (events owe the card and thread)."""
    with rt.db.session() as session:
        row = session.get(Message, message_id)
        assert row is not None
        now = utcnow()
        row.state = "sent"
        row.sent_at = now
        row.last_error = None
        if note:
            row.meta = {**(row.meta or {}), "delivery": note}
        inquiry = session.get(Inquiry, row.inquiry_id) if row.inquiry_id else None
        if inquiry is None:
            return
        if row.kind == "acknowledgment":
            record_event(session, inquiry.id, "system", "ack_sent", message_id=row.id, to=row.to_address,
                         answer=(row.meta or {}).get("answer_key"), **({"logged_only": True} if note else {}))
        else:  # a staff reply (kind "reply" or any other a person sent)
            on_reply_sent(inquiry, now)
            record_event(session, inquiry.id, row.author or "system", "reply_sent",
                         message_id=row.id, to=row.to_address, subject=row.subject,
                         **({"logged_only": True} if note else {}))


def _back_to_queued(rt: "Runtime", message_id: int, error: str) -> None:
    with rt.db.session() as session:
        row = session.get(Message, message_id)
        if row is not None and row.state == "sending":
            row.state = "queued"
            row.last_error = error[:2000]


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


@deliverer("email.send", channel="email", on_give_up=_gave_up, on_delayed=_delayed)
def deliver_email(rt: "Runtime", ticket: Ticket) -> str:
    """Send outbound message row ``ticket.args["message_id"]`` (returns its resulting state)."""
    return send_message(rt, int(ticket.args["message_id"]), ticket=ticket)


def send_message(rt: "Runtime", message_id: int, *, ticket: Ticket | None = None) -> str:
    options = load_options(rt.settings)
    prepared = _prepare(rt, message_id, options)
    if prepared.payload is None:
        log.info("outbound message %s not sent now: state %s", message_id, prepared.state)
        return prepared.state
    info = prepared.payload
    if ticket is not None and not still_ours(rt, ticket):
        raise Retry(f"delivery {ticket.key} outlived its lease; another attempt has it")

    note = None
    if options.log_only:
        log.info(
            "SMTP_URL is unset: not sending message %s to %s (%s), Message-ID <%s>",
            info["id"], info["to"], info["subject"], info["message_id"],
        )
        note = LOGGED_ONLY_NOTE  # firstrun: one constant, read by `intake show` (was_logged_only)
    else:
        cfg = rt.service("outbound.smtp", lambda rt: smtp_settings(rt.settings.smtp_url or ""))
        try:
            deliver(cfg, info["envelope_from"], info["to"], info["raw"])
        except DeliveryError as exc:
            log.warning("sending message %s via %s failed (attempt %s): %s",
                        message_id, cfg.describe(), info["attempts"], exc)
            if exc.permanent:
                raise GiveUp(str(exc)) from exc
            _back_to_queued(rt, message_id, str(exc))
            raise Retry(str(exc)) from exc

    for attempt in range(1, MARK_SENT_TRIES + 1):
        try:
            _record_sent(rt, message_id, note)
            break
        except Exception:
            if attempt == MARK_SENT_TRIES:
                log.exception("message %s was delivered but could not be marked sent", message_id)
                raise
            time.sleep(0.5 * attempt)
    return "sent"
