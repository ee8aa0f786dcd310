"""What the daily digest lists besides the unassigned queue: overdue inquiries, and those waiting
on the applicant for longer than ``[sla] waiting_days``. Oldest first."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.models import Event, Inquiry
from intake.sla import clock
from intake.sla.calendar import as_utc

LIMIT = 20
# Events after which an inquiry waits on the applicant: our reply, or the "waiting" button.
WAITING_EVENTS = ("reply_sent", "waiting")


def overdue(session: Session, at: dt.datetime, limit: int = LIMIT) -> list[Inquiry]:
    return list(session.scalars(
        select(Inquiry)
        .where(Inquiry.status.in_(clock.RUNNING), Inquiry.response_due <= as_utc(at))
        .order_by(Inquiry.received_at, Inquiry.id).limit(limit)
    ))


def waiting_too_long(session: Session, at: dt.datetime, days: int, limit: int = LIMIT) -> list[Inquiry]:
    """Waiting on the applicant since before ``at - days`` (since our last reply or the button)."""
    since = (
        select(Event.inquiry_id, func.max(Event.created_at).label("since"))
        .where(Event.kind.in_(WAITING_EVENTS))
        .group_by(Event.inquiry_id)
        .subquery()
    )
    waited_from = func.coalesce(since.c.since, Inquiry.updated_at)
    return list(session.scalars(
        select(Inquiry)
        .outerjoin(since, since.c.inquiry_id == Inquiry.id)
        .where(Inquiry.status == "waiting", waited_from <= as_utc(at) - dt.timedelta(days=days))
        .order_by(Inquiry.received_at, Inquiry.id).limit(limit)
    ))
