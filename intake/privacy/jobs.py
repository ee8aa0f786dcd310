"""The daily retention run, on the queue's periodic scheduler.

Huey's scheduler fires the job every hour on every consumer; a run key per UTC day, inserted as a
unique ``seen_nonces`` row, lets exactly one of them apply the policy each day (several Redis
workers, or a restarted one, never double-run). A run that crashes after claiming its day is
picked up by the next day's: the policy is "older than N days", so a day late deletes nothing
that should have stayed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from intake.jobs import periodic
from intake.models import SeenNonce, utcnow
from intake.privacy import config, run

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

RUN_KIND = "retention_run"
CHECK_EVERY_SECONDS = 3600


def claim_day(rt: "Runtime", day: str) -> bool:
    """True for the one caller that claims this day's run."""
    try:
        with rt.db.session() as session:
            session.add(SeenNonce(kind=RUN_KIND, value=day))
    except IntegrityError:
        return False
    return True


@periodic("privacy.retention", every_seconds=CHECK_EVERY_SECONDS)
def retention(rt: "Runtime") -> str:
    if not config.load(rt).retention.periodic:
        return "off"
    now = utcnow()
    if not claim_day(rt, now.date().isoformat()):
        return "done today"
    result = run.apply_retention(rt, now)
    if result.deleted or result.redacted:
        log.info("retention: deleted %d inquiries, redacted %d", result.deleted, result.redacted)
    return f"deleted {result.deleted}, redacted {result.redacted}"
