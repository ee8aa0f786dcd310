"""The SLA loop on the job queue: one periodic ``sla.tick`` a minute on every worker.

Each tick decides what is owed now (reminders and escalations for targets, today's digest, this
week's report) under unique keys, then delivers whatever is owed and due. Running it on several
workers at once, or again after a crash, owes nothing twice (see ``intake.sla.owed``), so it needs
no leader election; the deliverers live in the Slack layer (``intake.slack.sla``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from intake.jobs import periodic
from intake.models import utcnow
from intake.sla import clock, owed
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
    delivered = owed.deliver_owed(rt, now)
    if notices or runs:
        log.info("sla tick: %d reminders/escalations and %d reports owed; delivered %s",
                 len(notices), len(runs), delivered)
    return {"owed": len(notices) + len(runs), **delivered}
