"""Sending one stored outbound message exactly once, and recording what happened.

State machine of an outbound row: ``queued -> sending -> sent``, or ``failed`` (a permanent SMTP
refusal, or too many attempts), or ``suppressed`` (a rate cap held it back).

Exactly once, as far as SMTP allows:
- The claim is one conditional UPDATE (``queued -> sending``, attempts + 1), committed before the
  network call, so two workers given the same job cannot both send: the loser sees 0 rows.
- No transaction is open during the SMTP conversation.
- Transient failures (connection refused or dropped, timeouts, 4xx) put the row back to
  ``queued`` and raise, so the queue retries with backoff; after ``warn_after_attempts`` an
  ``smtp_delayed`` event warns in the Slack thread; after ``max_attempts`` the row is ``failed``.
- The window that cannot be closed: the server accepted the message and we crashed (or the
  database was unreachable) before recording ``sent``. The row then stays ``sending``. We chose
  to send again once its lease (``SENDING_LEASE``) has expired rather than lose a staff reply:
  the bytes, and so the Message-ID, are identical, so the applicant's client threads the copy
  onto the same conversation and many mailbox providers drop it as a duplicate. The "mark sent"
  write is retried a few times in-process first, which makes that window very small.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, update

from intake.models import Event, Inquiry, Message, utcnow
from intake.outbound.loops import cap_exceeded
from intake.outbound.options import OutboundOptions, load_options
from intake.outbound.smtp import DeliveryError, deliver, smtp_settings

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A row left in `sending` longer than this is presumed abandoned by a crashed worker.
SENDING_LEASE = dt.timedelta(minutes=15)
MARK_SENT_TRIES = 3


class TransientSendError(Exception):
    """Raised so that the queue retries the job later, with backoff."""


@dataclass
class Claim:
    state: str  # "claimed", or the row's state when it is not ours to send now
    payload: dict[str, Any] | None = None
    event_ids: list[int] = field(default_factory=list)


def _claim(rt: "Runtime", message_id: int, options: OutboundOptions) -> Claim:
    """Move the row to `sending` (committed) and return what the send needs."""
    now = utcnow()
    with rt.db.session() as session:
        claimed = session.execute(
            update(Message)
            .where(
                Message.id == message_id,
                Message.direction == "outbound",
                or_(
                    Message.state == "queued",
                    and_(
                        Message.state == "sending",
                        or_(Message.processed_at.is_(None), Message.processed_at < now - SENDING_LEASE),
                    ),
                ),
            )
            # processed_at on an outbound row: when the current attempt claimed it (the lease).
            .values(state="sending", attempts=Message.attempts + 1, processed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        row = session.get(Message, message_id)
        if row is None:
            return Claim("missing")
        session.refresh(row)
        if not claimed:
            return Claim(row.state)
        cap = cap_exceeded(session, row.to_address or "", options.caps, before_id=row.id)
        if cap is not None:
            # The hard ceiling applies to every kind of mail, staff replies included: more than
            # this to one address is a loop or a bug, and a person can always resend.
            row.state = "suppressed"
            row.last_error = f"rate cap: more than {cap.describe()} to this address"
            event = Event(
                inquiry_id=row.inquiry_id, actor="system", kind="cap_hit",
                detail={"message_id": row.id, "to": row.to_address, "cap": cap.describe(), "kind": row.kind},
            )
            session.add(event)
            session.flush()
            log.warning("outbound message %s to %s held back: %s", row.id, row.to_address, row.last_error)
            return Claim("suppressed", event_ids=[event.id])
        return Claim("claimed", {
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


def _record_sent(rt: "Runtime", message_id: int, note: str | None) -> list[int]:
    """Mark sent and update the inquiry; returns the ids of the events recorded."""
    with rt.db.session() as session:
        row = session.get(Message, message_id)
        assert row is not None
        now = utcnow()
        row.state = "sent"
        row.sent_at = now
        row.last_error = None
        if note:
            row.meta = {**(row.meta or {}), "delivery": note}
        events: list[Event] = []
        inquiry = session.get(Inquiry, row.inquiry_id) if row.inquiry_id else None
        if row.kind == "acknowledgment":
            if inquiry is not None:
                events.append(Event(
                    inquiry_id=inquiry.id, actor="system", kind="ack_sent",
                    detail={"message_id": row.id, "to": row.to_address,
                            "answer": (row.meta or {}).get("answer_key")},
                ))
        elif inquiry is not None:  # a staff reply (kind "reply" or any other a person sent)
            # first_response_at is set when the reply is queued (intake.sla.clock.responded).
            if inquiry.status in ("new", "open", "waiting"):
                inquiry.status = "waiting"
            events.append(Event(
                inquiry_id=inquiry.id, actor=row.author or "system", kind="reply_sent",
                detail={"message_id": row.id, "to": row.to_address, "subject": row.subject},
            ))
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


def _record_failure(rt: "Runtime", message_id: int, error: DeliveryError, options: OutboundOptions) -> tuple[str, list[int]]:
    """Back to `queued` for another try, or `failed` for good; warn once when it drags on."""
    with rt.db.session() as session:
        row = session.get(Message, message_id)
        assert row is not None
        row.last_error = str(error)[:2000]
        events: list[Event] = []
        give_up = error.permanent or row.attempts >= options.max_attempts
        row.state = "failed" if give_up else "queued"
        detail = {"message_id": row.id, "to": row.to_address, "attempts": row.attempts, "error": row.last_error}
        if give_up:
            events.append(Event(inquiry_id=row.inquiry_id, actor="system", kind="send_failed", detail=detail))
        elif row.attempts == options.delayed_after_attempts:
            events.append(Event(inquiry_id=row.inquiry_id, actor="system", kind="smtp_delayed", detail=detail))
        session.add_all(events)
        session.flush()
        return row.state, [e.id for e in events]


def notify_slack(rt: "Runtime", event_ids: list[int], inquiry_id: int | None = None, *, sync_card: bool = False) -> None:
    """Hand events to the Slack layer when it is installed (it posts them in the card's thread)."""
    from intake.jobs import load_jobs

    registry = load_jobs()
    if "slack.post_event" in registry:
        for event_id in event_ids:
            rt.enqueue("slack.post_event", event_id)
    if sync_card and inquiry_id is not None and "slack.sync_card" in registry:
        rt.enqueue("slack.sync_card", inquiry_id)


def send_message(rt: "Runtime", message_id: int) -> str:
    """The body of the ``outbound.send`` job: returns the row's resulting state."""
    options = load_options(rt.settings)
    claim = _claim(rt, message_id, options)
    if claim.payload is None:
        log.info("outbound message %s not sent now: state %s", message_id, claim.state)
        notify_slack(rt, claim.event_ids)
        return claim.state
    info = claim.payload

    note = None
    if options.log_only:
        log.info(
            "SMTP_URL is unset: not sending message %s to %s (%s), Message-ID <%s>",
            info["id"], info["to"], info["subject"], info["message_id"],
        )
        note = "logged only: SMTP_URL is unset"
    else:
        cfg = rt.service("outbound.smtp", lambda rt: smtp_settings(rt.settings.smtp_url or ""))
        try:
            deliver(cfg, info["envelope_from"], info["to"], info["raw"])
        except DeliveryError as exc:
            state, event_ids = _record_failure(rt, message_id, exc, options)
            log.warning(
                "sending message %s via %s failed (attempt %s): %s",
                message_id, cfg.describe(), info["attempts"], exc,
            )
            notify_slack(rt, event_ids)
            if state == "queued":
                raise TransientSendError(str(exc)) from exc
            return state

    for attempt in range(1, MARK_SENT_TRIES + 1):
        try:
            event_ids = _record_sent(rt, message_id, note)
            break
        except Exception:
            if attempt == MARK_SENT_TRIES:
                log.exception("message %s was delivered but could not be marked sent", message_id)
                raise
            time.sleep(0.5 * attempt)
    notify_slack(rt, event_ids, info["inquiry_id"], sync_card=(info["kind"] != "acknowledgment"))
    return "sent"
