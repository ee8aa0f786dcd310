"""Reminders and escalations: which inquiries need one now, owed once per target and stage.

Before a target (within ``[sla] due_soon`` business time of it) the card's thread gets a
reminder; once it has passed, an escalation and a card update (the card shows **Overdue**). Each
is an outbox delivery owed under the key ``sla.<stage>:<inquiry>:<target as epoch seconds>``, so
a retried or restarted tick, or a second worker running the same tick, never owes it twice,
while a *new* target (the applicant wrote again, or staff reclassified the inquiry) gets
reminders of its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.models import Delivery, Inquiry
from intake.outbox import owe, owe_card
from intake.sla import clock
from intake.sla.calendar import as_utc

# Delivery kinds (their deliverers are in intake/slack/sla.py).
REMINDER = "slack.sla_reminder"
ESCALATION = "slack.sla_escalation"
BATCH = 500
# A target that passed longer ago than this is not escalated on its own (an imported old
# mailbox would flood the channel); the daily digest lists it with the other overdue ones.
ESCALATE_WITHIN = dt.timedelta(days=7)


@dataclass(frozen=True)
class Notice:
    kind: str  # REMINDER or ESCALATION
    inquiry_id: int
    due_at: dt.datetime

    @property
    def key(self) -> str:
        stage = "escalation" if self.kind == ESCALATION else "reminder"
        return f"sla.{stage}:{self.inquiry_id}:{int(self.due_at.timestamp())}"

    @property
    def args(self) -> dict[str, str]:
        return {"due_at": self.due_at.isoformat()}


def reconcile(session: Session, rules: clock.Policy, now: dt.datetime) -> int:
    """Apply :func:`intake.sla.clock.reconcile` to every unanswered open inquiry."""
    changed = 0
    rows = session.scalars(
        select(Inquiry).where(Inquiry.status.in_(clock.RUNNING), Inquiry.first_response_at.is_(None))
        .order_by(Inquiry.id).execution_options(yield_per=BATCH)
    )
    for inquiry in rows:
        if clock.reconcile(inquiry, rules, now):
            changed += 1
    return changed


def due_notices(session: Session, rules: clock.Policy, now: dt.datetime) -> list[Notice]:
    """Reminders and escalations that are due now (owed or not yet), oldest target first.

    Not limited: the window (a week back to the next reminder horizon) bounds it, and a cap
    here would let the same first rows, already owed, hide the rest forever.
    """
    # Every target with at most `due_soon` business time left lies before this instant.
    horizon = rules.calendar.next_opening(rules.calendar.add(now, rules.settings.due_soon))
    rows = session.execute(
        select(Inquiry.id, Inquiry.response_due)
        .where(Inquiry.status.in_(clock.RUNNING), Inquiry.response_due.is_not(None),
               Inquiry.response_due <= horizon, Inquiry.response_due > now - ESCALATE_WITHIN)
        .order_by(Inquiry.response_due, Inquiry.id)
    ).all()
    notices = []
    for inquiry_id, due in rows:
        due = as_utc(due)
        stage = clock.stage(rules, due, now)
        if stage == "overdue":
            notices.append(Notice(ESCALATION, inquiry_id, due))
        elif stage == "due_soon":
            notices.append(Notice(REMINDER, inquiry_id, due))
    return notices


def owed_keys(session: Session, keys: list[str]) -> set[str]:
    """Which of these keys the outbox holds already (delivered or not): not decided again."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        found.update(session.scalars(select(Delivery.key).where(Delivery.key.in_(keys[i:i + 500]))))
    return found


def owe_notices(session: Session, rules: clock.Policy, now: dt.datetime) -> list[Notice]:
    """Owe every due reminder and escalation not owed before; returns the newly owed ones."""
    reconcile(session, rules, now)
    session.flush()
    notices = due_notices(session, rules, now)
    known = owed_keys(session, [n.key for n in notices])
    fresh = []
    for notice in notices:
        if notice.key in known:
            continue
        if owe(session, notice.kind, key=notice.key, inquiry_id=notice.inquiry_id, args=notice.args):
            fresh.append(notice)
            if notice.kind == ESCALATION:
                owe_card(session, notice.inquiry_id)  # the card now shows Overdue
    return fresh
