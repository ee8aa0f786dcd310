"""Volume and response figures for a period: `intake report` and the weekly report in Slack.

A period is a range of local dates (the program's time zone), both ends included. Figures:

- ``received``, ``by_category``: inquiries that arrived in the period (spam and automated too,
  so the volume is the real load on the address).
- ``first_response``: median and 90th percentile of the business hours from arrival to the first
  staff email reply, over the period's inquiries that got one.
- ``targets_met_pct``: of the period's inquiries whose first-response target is decided, the
  share answered by it. Decided means answered, or still owed (new or open) after its target;
  an inquiry closed or filed as spam without a reply owed nothing, and one still inside its
  target (or paused, waiting on the applicant) is not decided yet.
- ``open_now``, ``overdue_now``: the queue as it stands at ``now``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.models import Inquiry
from intake.sla import clock
from intake.sla.calendar import as_utc

DEFAULT_DAYS = 7
OLDEST_OPEN = 5
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class OpenItem:
    inquiry_id: int
    subject: str
    category: str | None
    status: str
    received_at: dt.datetime


@dataclass
class Report:
    since: dt.date
    until: dt.date
    received: int
    by_category: dict[str, int]
    median_hours: float | None
    p90_hours: float | None
    targets_met_pct: float | None
    open_now: int
    overdue_now: int
    # For the chart: arrivals per local day by category, and each first response (arrival day,
    # business hours) in arrival order.
    daily: dict[dt.date, dict[str, int]] = field(default_factory=dict)
    responses: list[tuple[dt.date, float]] = field(default_factory=list)
    oldest_open: list[OpenItem] = field(default_factory=list)

    @property
    def days(self) -> list[dt.date]:
        count = (self.until - self.since).days + 1
        return [self.since + dt.timedelta(days=i) for i in range(count)]

    def as_json(self) -> dict[str, Any]:
        """The `intake report --json` contract (../shared/DESIGN.md)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "received": self.received,
            "by_category": dict(self.by_category),
            "first_response": {"median_hours": self.median_hours, "p90_hours": self.p90_hours},
            "targets_met_pct": self.targets_met_pct,
            "open_now": self.open_now,
            "overdue_now": self.overdue_now,
        }


def period(rules: clock.Policy, now: dt.datetime, since: dt.date | None = None,
           until: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The dates asked for; by default the last seven local days, today included."""
    today = as_utc(now).astimezone(rules.settings.timezone).date()
    until = until or (today if since is None else max(since, today))
    since = since or until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise ValueError(f"the period starts ({since}) after it ends ({until})")
    return since, until


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def build(session: Session, rules: clock.Policy, since: dt.date, until: dt.date, now: dt.datetime) -> Report:
    zone, calendar = rules.settings.timezone, rules.calendar
    start = calendar.local_instant(since, 0)
    end = calendar.local_instant(until + dt.timedelta(days=1), 0)
    now = as_utc(now)
    rows = session.execute(
        select(Inquiry.category, Inquiry.status, Inquiry.received_at, Inquiry.first_response_at,
               Inquiry.first_response_due)
        .where(Inquiry.received_at >= start, Inquiry.received_at < end)
        .order_by(Inquiry.received_at, Inquiry.id)
    ).all()
    by_category: dict[str, int] = {}
    daily: dict[dt.date, dict[str, int]] = {}
    responses: list[tuple[dt.date, float]] = []
    met = decided = 0
    for category, status, received, answered, due in rows:
        name = category or UNCLASSIFIED
        received = as_utc(received)
        day = received.astimezone(zone).date()
        by_category[name] = by_category.get(name, 0) + 1
        counts = daily.setdefault(day, {})
        counts[name] = counts.get(name, 0) + 1
        if answered is not None:
            answered = as_utc(answered)
            responses.append((day, calendar.between(received, answered).total_seconds() / 3600))
        if due is None:
            continue
        due = as_utc(due)
        if answered is not None:
            decided += 1
            met += answered <= due
        elif status in clock.RUNNING and now >= due:
            decided += 1
    hours = [h for _, h in responses]
    open_now = session.scalar(select(func.count(Inquiry.id)).where(Inquiry.status.in_(clock.LISTED))) or 0
    overdue_now = session.scalar(
        select(func.count(Inquiry.id)).where(Inquiry.status.in_(clock.RUNNING), Inquiry.response_due <= now)
    ) or 0
    return Report(
        since=since,
        until=until,
        received=len(rows),
        by_category=dict(sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))),
        median_hours=_round(np.median(hours)) if hours else None,
        p90_hours=_round(np.percentile(hours, 90)) if hours else None,
        targets_met_pct=_round(100.0 * met / decided, 1) if decided else None,
        open_now=open_now,
        overdue_now=overdue_now,
        daily=daily,
        responses=responses,
        oldest_open=oldest_open(session),
    )


def oldest_open(session: Session, limit: int = OLDEST_OPEN) -> list[OpenItem]:
    rows = session.scalars(
        select(Inquiry).where(Inquiry.status.in_(clock.LISTED))
        .order_by(Inquiry.received_at, Inquiry.id).limit(limit)
    )
    return [OpenItem(i.id, i.subject or "", i.category, i.status, as_utc(i.received_at)) for i in rows]
