"""The jobs that carry a stored message through the domain, and the sweeper that guards them.

The webhook commits the raw message and then enqueues ``pipeline.process_message``. If the
process dies between the commit and the enqueue, or a worker is killed mid-job (huey loses a
task that way), the message row stays in state ``received`` and the periodic sweeper enqueues
it again. Processing is idempotent, so a message enqueued twice is processed once. Everything
processing owes afterwards is an outbox delivery committed with it (intake/outbox/).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from intake import inquiries
from intake.jobs import job, periodic
from intake.models import Message, SeenNonce, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A message younger than this may still be on its way through the queue; older ones are stuck.
STUCK_AFTER = dt.timedelta(minutes=2)
SWEEP_EVERY_SECONDS = 60
SWEEP_BATCH = 500
NONCE_TTL = dt.timedelta(days=2)


def process_stored(rt: "Runtime", message_id: int) -> inquiries.ProcessResult:
    """Process one stored message in its own transaction. What it owes (card, acknowledgment,
    thread line) commits with it and is handed to the outbox's workers after the commit."""
    with rt.db.session() as session:
        return inquiries.process_message(session, rt, message_id)


@job("pipeline.process_message", retries=5, retry_delay=5)
def process_message_job(rt: "Runtime", message_id: int) -> str:
    return process_stored(rt, message_id).status


def find_stuck(rt: "Runtime", *, older_than: dt.timedelta = STUCK_AFTER, now: dt.datetime | None = None) -> list[int]:
    """Ids of inbound messages stored but never processed, oldest first."""
    cutoff = (now or utcnow()) - older_than
    with rt.db.read_session() as session:
        return list(
            session.scalars(
                select(Message.id)
                .where(Message.state == "received", Message.created_at < cutoff)
                .order_by(Message.id)
                .limit(SWEEP_BATCH)
            )
        )


@periodic("pipeline.sweep", every_seconds=SWEEP_EVERY_SECONDS)
def sweep(rt: "Runtime") -> dict[str, int]:
    """Re-enqueue stored messages a crash left unprocessed, and forget replay nonces nobody can
    reuse. (Deliveries need no sweep here: the outbox poller finds every one that is due.)"""
    inbound = find_stuck(rt)
    for message_id in inbound:
        process_message_job.enqueue(rt, message_id)
    with rt.db.session() as session:
        session.execute(delete(SeenNonce).where(SeenNonce.seen_at < utcnow() - NONCE_TTL))
    if inbound:
        log.warning("sweeper re-enqueued %d unprocessed messages", len(inbound))
    return {"inbound": len(inbound)}
