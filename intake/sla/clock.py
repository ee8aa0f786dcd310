"""The response clock on each inquiry: what each lifecycle step does to its targets.

This is the one home of the rules (the domain and the outbound layer call these functions; the
commands, the reminders and the cards read :func:`evaluate`):

- An inquiry gets ``first_response_due`` when it arrives: its category's target in business time
  after its arrival (``spam`` and ``automated`` have none). ``response_due``, the running clock,
  starts at the same instant.
- A staff email reply (not a note, not the acknowledgment) meets it: ``first_response_at`` is set
  once, and the running clock stops (nothing is owed until the applicant writes again).
- **waiting** (on the applicant) pauses it and closing or marking spam stops it: no response is
  owed while the ball is in the applicant's court or the inquiry is done.
- The applicant's next email reopens it with a next-response target from that email's arrival;
  a follow-up while a response is still owed keeps the earlier target (it never moves later).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_

from intake.models import Inquiry
from intake.sla.calendar import BusinessCalendar, as_utc
from intake.sla.settings import SlaSettings

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

# Statuses in which a response can be owed (the clock runs); `waiting` pauses it.
RUNNING = ("new", "open")
# Statuses `intake due` lists.
LISTED = ("new", "open", "waiting")
STATES = ("on_track", "due_soon", "overdue", "paused", "met")


@dataclass(frozen=True)
class Policy:
    """The parsed ``[sla]`` settings with their business calendar: what the rules need."""

    settings: SlaSettings
    calendar: BusinessCalendar

    @classmethod
    def from_settings(cls, sla: SlaSettings) -> "Policy":
        return cls(sla, BusinessCalendar.from_settings(sla))

    def due(self, category: str | None, start: dt.datetime) -> dt.datetime | None:
        """When a response to something that arrived at ``start`` is due, or None (no target)."""
        target = self.settings.target_for(category)
        return None if target is None else self.calendar.add(start, target)


def policy(rt: "Runtime") -> Policy:
    """The process's policy, parsed and validated once (a bad ``[sla]`` fails on first use)."""

    def build(rt: "Runtime") -> Policy:
        table = rt.settings.section("sla")
        return Policy.from_settings(SlaSettings.from_config(table, categories=rt.settings.category_names))

    return rt.service("sla.policy", build)


# ---- lifecycle steps (the caller owns the transaction) ----------------------------------------


def start(inquiry: Inquiry, rules: Policy, arrived_at: dt.datetime) -> None:
    """A new inquiry: its first-response target, and the clock running unless it is filed away
    (spam, or automated mail closed on arrival)."""
    due = rules.due(inquiry.category, arrived_at)
    inquiry.first_response_due = due
    inquiry.response_due = due if inquiry.status in RUNNING else None


def applicant_wrote(inquiry: Inquiry, rules: Policy, arrived_at: dt.datetime, *, reopened: bool) -> None:
    """A person's follow-up (automated mail never calls this). ``reopened`` when it brought the
    inquiry back from waiting or closed: a fresh next-response target, whatever was left."""
    if inquiry.status not in RUNNING:
        return
    if reopened or inquiry.response_due is None:
        inquiry.response_due = rules.due(inquiry.category, arrived_at)


def responded(inquiry: Inquiry, at: dt.datetime) -> None:
    """A staff email reply was written: the first response (once), and nothing owed for now."""
    if inquiry.first_response_at is None:
        inquiry.first_response_at = at
    inquiry.response_due = None


def stop(inquiry: Inquiry) -> None:
    """Waiting on the applicant, closed or spam: no response is owed until they write again."""
    inquiry.response_due = None


def reconcile(inquiry: Inquiry, rules: Policy, now: dt.datetime) -> bool:
    """An unanswered inquiry whose clock should run: its target as its category says now.

    For the two staff actions that change what is owed without knowing the settings: a
    reclassified inquiry gets its new category's target from its arrival, and one brought back
    without any reply (restored from spam, reopened by staff) owes a first response from now.
    True when something changed.
    """
    if inquiry.status not in RUNNING or inquiry.first_response_at is not None:
        return False
    running, first = _utc(inquiry.response_due), _utc(inquiry.first_response_due)
    if running is None:
        due = rules.due(inquiry.category, now)
        if due is None:
            return False
        inquiry.response_due = due
        if first is None:
            inquiry.first_response_due = due
        return True
    if running == first:  # still the first target: follow the category
        expected = rules.due(inquiry.category, _utc(inquiry.received_at) or now)
        if expected != first:
            inquiry.first_response_due = inquiry.response_due = expected
            return True
    return False


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    return None if when is None else as_utc(when)


# ---- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueState:
    due_at: dt.datetime | None
    state: str  # one of STATES


def evaluate(inquiry: Inquiry, rules: Policy, at: dt.datetime) -> DueState | None:
    """The inquiry against its target at ``at``; None when it has none (closed, spam, a category
    without a target, or reopened by staff without anything owed)."""
    if inquiry.status == "waiting":
        return DueState(None, "paused")
    if inquiry.status not in RUNNING:
        return None
    if inquiry.response_due is None:
        if inquiry.first_response_at is None:
            return None
        return DueState(_utc(inquiry.first_response_due), "met")
    due = as_utc(inquiry.response_due)
    return DueState(due, stage(rules, due, at) or "on_track")


def overdue_clause(at: dt.datetime):
    """The SQL form of "overdue" (a response owed and its target passed at ``at``), for the
    search language's ``overdue`` (issue 16); the same rule as :func:`evaluate` and :func:`stage`,
    served by the (status, response_due) index."""
    return and_(Inquiry.status.in_(RUNNING), Inquiry.response_due.is_not(None), Inquiry.response_due <= at)


def stage(rules: Policy, due: dt.datetime, at: dt.datetime) -> str | None:
    """``overdue`` from the target on, ``due_soon`` within ``due_soon`` business time of it."""
    if as_utc(at) >= as_utc(due):
        return "overdue"
    if rules.calendar.between(at, due) <= rules.settings.due_soon:
        return "due_soon"
    return None
