"""Owing a delivery, and the registry of the functions that deliver each kind.

``owe`` runs inside the caller's transaction: the delivery commits with the state change that
caused it or not at all. The ids of new rows are remembered on the session, and once it commits
``Database`` hands them to the queue (see ``intake.db``), so a delivery normally starts at once;
the poller (intake/outbox/worker.py) covers a kick that was lost with a killed process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sqlalchemy import case
from sqlalchemy.orm import Session

from intake.models import Delivery, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.config import Settings
    from intake.runtime import Runtime

# Session.info key under which owe() collects the ids to kick after commit.
PENDING_IDS = "intake.outbox.ids"


class Retry(Exception):
    """Raised by a deliverer: not now, try again later (after ``after`` seconds if given)."""

    def __init__(self, reason: str, *, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class GiveUp(Exception):
    """Raised by a deliverer: this will never succeed (a permanent refusal); fail it now."""


@dataclass(frozen=True)
class Ticket:
    """What a deliverer is handed: the claimed row's facts, no ORM object."""

    id: int
    key: str
    kind: str
    inquiry_id: int | None
    args: dict[str, Any]
    attempts: int  # including this one: more than 1 means an earlier attempt may have acted
    requested: int
    created_at: dt.datetime
    # When this attempt's lease ends (set by the claim; None for a ticket built by hand).
    leased_until: dt.datetime | None = None
    # Whether this row was delivered once already (a coalescing kind owed again afterwards).
    delivered_before: bool = False

    @property
    def retried(self) -> bool:
        return self.attempts > 1


@dataclass(frozen=True)
class DeliverySpec:
    kind: str
    fn: Callable[["Runtime", Ticket], str | None]
    # Which deadline applies: "slack" or "email" (``[outbox]`` has one for each).
    channel: str
    # A coalescing kind (a card update) is owed again while pending or done, and then runs once
    # more; other kinds are owed once per key, ever.
    coalesce: bool = False
    # Called in the transaction that marks the row failed, to record what staff should see.
    on_give_up: Callable[[Session, Ticket, str], None] | None = None
    # Called once when a delivery has failed for longer than the channel's warning delay.
    on_delayed: Callable[[Session, Ticket, str], None] | None = None
    # Deliveries of one lane run one after another in one job; lanes run side by side, so an
    # acknowledgment never waits behind Slack's one-post-a-second pace.
    lane: str = field(default="")
    # Optional: deliver several tickets of this kind at once (shared reads, one connection):
    # ``fn(rt, tickets) -> {ticket id: result or the exception met}``, an exception meaning what
    # it means raised by ``fn`` (Retry, GiveUp, a failure); ``fn`` stays the way to deliver one.
    batch: Callable[["Runtime", list[Ticket]], dict[int, Any]] | None = None

    def deadline(self, settings: "Settings") -> dt.timedelta:
        outbox = settings.outbox
        return outbox.email_deadline if self.channel == "email" else outbox.slack_deadline


SPECS: dict[str, DeliverySpec] = {}

# Modules that register deliverers (imported by load_deliverers).
DELIVERER_MODULES = ("intake.slack.deliveries", "intake.outbound.deliveries",
                     "intake.slack.group_deliveries",  # slack.group_card
                     "intake.slack.sla",  # reminders, escalations, the daily digest, the weekly report
                     "intake.slack.erasure")  # privacy: cards and lines after an erasure


def deliverer(kind: str, *, channel: str, coalesce: bool = False,
              on_give_up: Callable[[Session, Ticket, str], None] | None = None,
              on_delayed: Callable[[Session, Ticket, str], None] | None = None,
              batch: Callable[["Runtime", list[Ticket]], dict[int, Any]] | None = None):
    """Register ``fn(rt, ticket) -> result`` as the way to deliver ``kind`` (and ``batch`` as the
    way to deliver several at once, when there is one)."""

    def register(fn):
        SPECS[kind] = DeliverySpec(kind, fn, channel, coalesce, on_give_up, on_delayed, lane=channel, batch=batch)
        return fn

    return register


def load_deliverers() -> dict[str, DeliverySpec]:
    import importlib

    for module in DELIVERER_MODULES:
        importlib.import_module(module)
    return SPECS


def _insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


# Deadlines when a Settings object is not at hand (owe() runs inside the domain): the defaults of
# [outbox]; the worker re-reads the real ones when it gives up (see worker.fail).
DEFAULT_DEADLINES = {"slack": dt.timedelta(hours=6), "email": dt.timedelta(hours=48)}
COALESCING_KINDS = frozenset({"slack.card"})


@dataclass(frozen=True)
class Owing:
    """One delivery to owe (the arguments of :func:`owe`)."""

    kind: str
    key: str
    inquiry_id: int | None = None
    args: dict[str, Any] | None = None
    not_before: dt.datetime | None = None
    coalesce: bool | None = None
    deadline: dt.timedelta | None = None


def owe(session: Session, kind: str, *, key: str, inquiry_id: int | None = None,
        args: dict[str, Any] | None = None, not_before: dt.datetime | None = None,
        coalesce: bool | None = None, deadline: dt.timedelta | None = None) -> bool:
    """Record, in the caller's transaction, that ``kind`` is owed; the same key is owed once.

    A coalescing kind owed again while its row is pending or done is asked for once more
    (``requested`` + 1): a card changed twice while Slack was slow is updated, not forgotten.
    Returns whether anything was owed (False: that key was owed already).
    """
    owing = Owing(kind, key, inquiry_id, args, not_before, coalesce, deadline)
    return owe_many(session, [owing])[owing.key[:255]]


def owe_many(session: Session, owings: Sequence[Owing]) -> dict[str, bool]:
    """:func:`owe` for many deliveries in at most two statements (the coalescing ones, the
    others), as a batch of messages owes them; returns, by key, whether each was owed.

    The same coalescing key twice in one call is one row asked for that many times.
    """
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    coalescing: set[str] = set()
    for owing in owings:
        key = owing.key[:255]
        start = max(now, owing.not_before) if owing.not_before else now
        coalesce = owing.kind in COALESCING_KINDS if owing.coalesce is None else owing.coalesce
        if key in rows:
            if coalesce:
                rows[key]["requested"] += 1
            continue
        channel = "email" if owing.kind.startswith("email.") else "slack"
        rows[key] = dict(
            key=key, kind=owing.kind, inquiry_id=owing.inquiry_id, args=owing.args or {}, state="pending",
            attempts=0, requested=1, next_attempt_at=start,
            deadline=start + (owing.deadline or DEFAULT_DEADLINES[channel]), created_at=now,
        )
        if coalesce:
            coalescing.add(key)
    owed = {key: False for key in rows}
    table = Delivery.__table__
    insert = _insert(session.connection().dialect.name)
    for wanted in (True, False):
        values = [row for key, row in rows.items() if (key in coalescing) == wanted]
        if not values:
            continue
        # Executed with a list of rows: SQLAlchemy's "insertmanyvalues" sends them as one INSERT
        # with RETURNING, and the statement is compiled once, not once per batch size.
        stmt = insert(table)
        if wanted:
            # Pending: leave its schedule alone (it may be backing off); done or failed: run again.
            was_pending = table.c.state == "pending"
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "requested": table.c.requested + stmt.excluded.requested,
                    "state": "pending",
                    "next_attempt_at": case((was_pending, table.c.next_attempt_at), else_=stmt.excluded.next_attempt_at),
                    "attempts": case((was_pending, table.c.attempts), else_=0),
                    "deadline": case((was_pending, table.c.deadline), else_=stmt.excluded.deadline),
                },
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[table.c.key])
        for row in session.execute(stmt.returning(table.c.id, table.c.key, table.c.kind), values):
            owed[row.key] = True
            if rows[row.key]["next_attempt_at"] <= now:
                session.info.setdefault(PENDING_IDS, []).append((row.kind, row.id))
    return owed


def card_owing(inquiry_id: int) -> Owing:
    """The inquiry's triage card, as an :class:`Owing` (one key per inquiry: coalescing)."""
    return Owing("slack.card", f"card:{inquiry_id}", inquiry_id)


def owe_card(session: Session, inquiry_id: int) -> None:
    """The inquiry's triage card must show its current state (posted once, then updated)."""
    owe_many(session, [card_owing(inquiry_id)])
