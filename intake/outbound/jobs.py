"""The outbound jobs, registered by name with the job registry (see intake/jobs.py).

Retries: ``outbound.send`` raises :class:`TransientSendError` on an SMTP outage, and the queue
retries it 6 times with doubling delays from 30 s (about 30 minutes in all); after that the
sweeper re-enqueues rows still ``queued``, and ``max_attempts`` finally marks the row ``failed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intake.jobs import job
from intake.outbound.acknowledge import acknowledge
from intake.outbound.sending import send_message

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime


@job("outbound.send", retries=6, retry_delay=30.0)
def send_job(rt: "Runtime", message_id: int) -> str:
    """Send outbound message row ``message_id`` exactly once (see intake.outbound.sending)."""
    return send_message(rt, message_id)


@job("outbound.acknowledge", retries=3, retry_delay=30.0)
def acknowledge_job(rt: "Runtime", message_id: int) -> str:
    """Acknowledge inbound message row ``message_id`` if it opened an inquiry and a person wrote it."""
    return acknowledge(rt, message_id).status
