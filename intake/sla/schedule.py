"""The daily digest and the weekly report: whether one is due now, under a run key per period.

Every worker's ``sla.tick`` asks the same question each minute; the first to owe the period's
outbox delivery, keyed by the period (``sla.digest:<local date>``, ``sla.weekly:<local monday>``:
a unique row in ``deliveries``), wins and the others find the key taken,
so any number of Redis workers (or a restarted one) produce one digest a day and one report a
week. A worker that was down at digest time catches up later the same day, never the next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from intake.outbox import owe
from intake.sla.calendar import as_utc
from intake.sla.clock import Policy

# Delivery kinds (their deliverers are in intake/slack/sla.py).
DIGEST = "slack.sla_digest"
WEEKLY = "slack.sla_weekly"
MONDAY = 0


@dataclass(frozen=True)
class Run:
    kind: str
    key: str
    args: dict[str, str]


def local_now(rules: Policy, now: dt.datetime) -> dt.datetime:
    return as_utc(now).astimezone(rules.settings.timezone)


def digest_run(rules: Policy, now: dt.datetime) -> Run | None:
    """Today's digest, once the configured local time has passed on a business day."""
    local = local_now(rules, now)
    if not rules.settings.daily_digest or not rules.calendar.is_business_day(local.date()):
        return None
    if local.time() < rules.settings.digest_time:
        return None
    return Run(DIGEST, f"sla.digest:{local.date().isoformat()}", {"date": local.date().isoformat()})


def weekly_run(rules: Policy, now: dt.datetime) -> Run | None:
    """Monday's report on the week before (Monday to Sunday, local dates), from digest time on."""
    local = local_now(rules, now)
    if not rules.settings.weekly_report or local.weekday() != MONDAY:
        return None
    if local.time() < rules.settings.digest_time:
        return None
    monday = local.date()
    return Run(WEEKLY, f"sla.weekly:{monday.isoformat()}", {
        "since": (monday - dt.timedelta(days=7)).isoformat(),
        "until": (monday - dt.timedelta(days=1)).isoformat(),
    })


def owe_runs(session: Session, rules: Policy, now: dt.datetime) -> list[Run]:
    """Owe the periodic runs that are due and not yet owed; returns the newly owed ones."""
    fresh = []
    for run in (digest_run(rules, now), weekly_run(rules, now)):
        if run is not None and owe(session, run.kind, key=run.key, args=run.args):
            fresh.append(run)
    return fresh
