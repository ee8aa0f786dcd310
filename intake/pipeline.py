"""The jobs that carry a stored message through the domain, and the sweeper that guards them.

The webhook commits the raw message and then enqueues ``pipeline.process_message``. If the
process dies between the commit and the enqueue, or a worker is killed mid-job (huey loses a
task that way), the message row stays in state ``received`` and the periodic sweeper enqueues
it again. Processing is idempotent, so a message enqueued twice is processed once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from intake import inquiries
from intake.jobs import job, periodic
from intake.models import Inquiry, Message, SeenNonce, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A message younger than this may still be on its way through the queue; older ones are stuck.
STUCK_AFTER = dt.timedelta(minutes=2)
SWEEP_EVERY_SECONDS = 60
SWEEP_BATCH = 500
NONCE_TTL = dt.timedelta(days=2)


def enqueue_followups(rt: "Runtime", followups: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Hand the next steps (Slack card, acknowledgment) to the queue."""
    for name, args in followups:
        rt.enqueue(name, *args)


def process_stored(rt: "Runtime", message_id: int) -> inquiries.ProcessResult:
    """Process one stored message in its own transaction, then enqueue what follows."""
    with rt.db.session() as session:
        result = inquiries.process_message(session, rt, message_id)
    enqueue_followups(rt, result.followups)
    return result


@job("pipeline.process_message", retries=5, retry_delay=5)
def process_message_job(rt: "Runtime", message_id: int) -> str:
    return process_stored(rt, message_id).status


def find_stuck(rt: "Runtime", *, older_than: dt.timedelta = STUCK_AFTER, now: dt.datetime | None = None):
    """Ids of inbound messages never processed and outbound ones never sent, oldest first."""
    cutoff = (now or utcnow()) - older_than
    with rt.db.session() as session:
        inbound = list(
            session.scalars(
                select(Message.id)
                .where(Message.state == "received", Message.created_at < cutoff)
                .order_by(Message.id)
                .limit(SWEEP_BATCH)
            )
        )
        outbound = list(
            session.scalars(
                select(Message.id)
                .where(Message.state.in_(("queued", "sending")), Message.created_at < cutoff)
                .order_by(Message.id)
                .limit(SWEEP_BATCH)
            )
        )
        unposted: list[int] = []
        if rt.settings.slack_enabled:
            unposted = list(
                session.scalars(
                    select(Inquiry.id)
                    .where(
                        Inquiry.slack_ts.is_(None),
                        Inquiry.status.not_in(("spam", "closed")),
                        Inquiry.created_at < cutoff,
                    )
                    .order_by(Inquiry.id)
                    .limit(SWEEP_BATCH)
                )
            )
    return inbound, outbound, unposted


@periodic("pipeline.sweep", every_seconds=SWEEP_EVERY_SECONDS)
def sweep(rt: "Runtime") -> dict[str, int]:
    """Re-enqueue whatever a crash stranded, and forget replay nonces nobody can reuse."""
    inbound, outbound, unposted = find_stuck(rt)
    for message_id in inbound:
        rt.enqueue("pipeline.process_message", message_id)
    for message_id in outbound:
        rt.enqueue("outbound.send", message_id)
    for inquiry_id in unposted:
        rt.enqueue("slack.sync_card", inquiry_id)
    with rt.db.session() as session:
        session.execute(delete(SeenNonce).where(SeenNonce.seen_at < utcnow() - NONCE_TTL))
    if inbound or outbound or unposted:
        log.warning(
            "sweeper re-enqueued %d unprocessed, %d unsent, %d unposted",
            len(inbound), len(outbound), len(unposted),
        )
    return {"inbound": len(inbound), "outbound": len(outbound), "unposted": len(unposted)}
