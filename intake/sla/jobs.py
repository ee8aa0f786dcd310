"""The SLA loop on the job queue: one periodic ``sla.tick`` a minute on every worker.

Each tick decides what is owed now (reminders and escalations for targets, today's digest, this
week's report) and owes it to the outbox under unique keys, in one transaction; the outbox's
workers deliver it (intake/slack/sla.py). Running the tick on several workers at once, or again
after a crash, owes nothing twice, so it needs no leader election.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from intake.jobs import periodic
from intake.models import utcnow
from intake.sla import clock
from intake.sla.notices import owe_notices
from intake.sla.schedule import owe_runs

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

TICK_EVERY_SECONDS = 60


@periodic("sla.tick", every_seconds=TICK_EVERY_SECONDS)
def tick(rt: "Runtime", now: dt.datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    rules = clock.policy(rt)
    with rt.db.session() as session:
        notices = owe_notices(session, rules, now)
        runs = owe_runs(session, rules, now)
    if notices or runs:
        log.info("sla tick: owed %d reminders/escalations and %d digests/reports", len(notices), len(runs))
    return {"notices": len(notices), "runs": len(runs)}
