"""Delivering what is owed: claim a row with a lease, act, record the outcome.

Each delivery runs the same three steps, and a process can be killed between any two of them:

1. **claim** (committed): ``attempts + 1`` and a lease, only if the row is pending, due and not
   leased. Two workers handed the same row: one claims it, the other sees no row.
2. **act**, with no transaction open: the deliverer talks to Slack or SMTP. It is told whether an
   earlier attempt may already have acted (``ticket.retried``) and checks before acting again
   (a card looked up by its metadata, an email's fixed Message-ID).
3. **record** (committed): ``done``; or back to pending with a backoff; or ``failed`` once it has
   kept failing past its channel's deadline, with an event staff see on the card.

A worker killed in step 2 leaves a lease that expires; the poller then finds the row due again.
Nothing is lost (the row is there until done) and nothing acts twice without checking first.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import bindparam, or_, select, update

from intake.jobs import job
from intake.models import Delivery, utcnow
from intake.outbox.core import SPECS, GiveUp, Retry, Ticket, load_deliverers

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# How many deliveries one poll takes at most (the rest wait for the next poll).
POLL_BATCH = 200
# A re-requested coalescing delivery (a card changed again while it was being updated) is run
# again at once, up to this many times in one job; past that the poller takes it.
MAX_RERUNS = 5


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite hands back naive UTC datetimes
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def claim_many(rt: "Runtime", delivery_ids: Iterable[int], *, now: dt.datetime | None = None) -> list[Ticket]:
    """Lease, in one committed statement, those of these rows that are pending, due and free;
    tickets in the order the ids were given. Two workers handed the same rows split them."""
    ids = list(dict.fromkeys(delivery_ids))
    if not ids:
        return []
    now = now or utcnow()
    lease = now + rt.settings.outbox.lease
    table = Delivery.__table__
    with rt.db.session() as session:
        rows = session.execute(
            update(table)
            .where(
                table.c.id.in_(ids),
                table.c.state == "pending",
                table.c.next_attempt_at <= now,
                or_(table.c.leased_until.is_(None), table.c.leased_until < now),
            )
            .values(attempts=table.c.attempts + 1, leased_until=lease)
            .returning(table.c.id, table.c.key, table.c.kind, table.c.inquiry_id, table.c.args,
                       table.c.attempts, table.c.requested, table.c.created_at, table.c.done_at)
        ).all()
    by_id = {row.id: Ticket(row.id, row.key, row.kind, row.inquiry_id, dict(row.args or {}), row.attempts,
                            row.requested, _aware(row.created_at), lease, row.done_at is not None)
             for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def claim(rt: "Runtime", delivery_id: int, *, now: dt.datetime | None = None) -> Ticket | None:
    """Lease the row if it is pending, due and free; None when it is not ours to deliver now."""
    tickets = claim_many(rt, [delivery_id], now=now)
    return tickets[0] if tickets else None


def still_ours(rt: "Runtime", ticket: Ticket) -> bool:
    """Whether this attempt still holds the delivery's lease: checked right before an act that
    cannot be taken back (a post, an SMTP transaction), so an attempt that outlived its lease
    (a stalled process) never acts beside the attempt that took over."""
    return ticket.id in still_ours_many(rt, [ticket])


# An act is begun only while this much of the lease is left by this process's clock (at most a
# quarter of the lease): the margin covers the act itself and a modest clock difference between
# workers.
LEASE_MARGIN = dt.timedelta(seconds=30)


def still_ours_many(rt: "Runtime", tickets: Iterable[Ticket]) -> set[int]:
    """The ids of these tickets whose lease this attempt still holds, asked in one query.

    A batch deliverer asks once before its first act and then, before each further act, only
    :func:`lease_left` (this process's clock): another attempt can take a row over only once
    its lease has run out, so a lease checked in the database and still running locally is
    still ours."""
    tickets = list(tickets)
    if not tickets:
        return set()
    table = Delivery.__table__
    with rt.db.read_session() as session:
        rows = session.execute(
            select(table.c.id, table.c.attempts, table.c.leased_until, table.c.state)
            .where(table.c.id.in_([t.id for t in tickets]))
        ).all()
    now = utcnow()
    found = {row.id: row for row in rows}
    ours = set()
    for ticket in tickets:
        row = found.get(ticket.id)
        if row is None or row.state != "pending" or row.attempts != ticket.attempts:
            continue
        leased_until = _aware(row.leased_until)
        if leased_until is not None and leased_until > now:
            ours.add(ticket.id)
    return ours


def lease_left(rt: "Runtime", ticket: Ticket, *, now: dt.datetime | None = None) -> bool:
    """Whether enough of this attempt's lease is left, by this process's clock, to begin an act."""
    margin = min(LEASE_MARGIN, rt.settings.outbox.lease / 4)
    return ticket.leased_until is not None and (now or utcnow()) < ticket.leased_until - margin


def _complete(rt: "Runtime", ticket: Ticket, result: str) -> bool:
    """Mark done (or pending again if re-requested meanwhile); True when it must run again."""
    return bool(_complete_many(rt, [(ticket, result)]))


def _complete_many(rt: "Runtime", finished: list[tuple[Ticket, str]]) -> list[Ticket]:
    """Mark done, in one statement; a row asked for again while we worked on it (a coalescing
    card update) goes back to pending, due now. Returns the tickets that must run again."""
    if not finished:
        return []
    table = Delivery.__table__
    now = utcnow()
    with rt.db.session() as session:
        done = session.execute(
            update(table)
            .where(table.c.id == bindparam("t_id"), table.c.attempts == bindparam("t_attempts"),
                   table.c.requested == bindparam("t_requested"))
            .values(state="done", leased_until=None, result=bindparam("t_result"), done_at=now,
                    last_error=None, first_failed_at=None),
            [{"t_id": t.id, "t_attempts": t.attempts, "t_requested": t.requested, "t_result": result[:64]}
             for t, result in finished],
        ).rowcount
        if done == len(finished):
            return []
        # Asked for again while we worked: run once more, now (only rows this attempt still holds).
        rows = session.execute(
            select(table.c.id, table.c.state, table.c.attempts).where(table.c.id.in_([t.id for t, _ in finished]))
        ).all()
        held = {row.id for row in rows if row.state == "pending"}
        again = [(t, result) for t, result in finished if t.id in held and
                 next(r.attempts for r in rows if r.id == t.id) == t.attempts]
        if again:
            session.execute(
                update(table)
                .where(table.c.id == bindparam("t_id"), table.c.attempts == bindparam("t_attempts"))
                .values(leased_until=None, next_attempt_at=now, attempts=0, result=bindparam("t_result"),
                        first_failed_at=None),
                [{"t_id": t.id, "t_attempts": t.attempts, "t_result": result[:64]} for t, result in again],
            )
        return [t for t, _ in again]


def backoff_seconds(rt: "Runtime", attempts: int, hint: float | None = None) -> float:
    """Doubling from ``first_retry_seconds`` up to ``max_retry_seconds``, with a little jitter so
    that deliveries failing together do not retry in lockstep; a provider's hint (Slack's
    ``Retry-After``) is a floor."""
    outbox = rt.settings.outbox
    delay = min(outbox.max_retry_seconds, outbox.first_retry_seconds * (2 ** max(0, attempts - 1)))
    delay *= random.uniform(0.85, 1.0)
    return max(delay, hint or 0.0)


def _fail(rt: "Runtime", ticket: Ticket, error: str, *, permanent: bool, hint: float | None) -> str:
    """Back off, or give up past the deadline; returns the row's new state."""
    spec = SPECS[ticket.kind]
    now = utcnow()
    with rt.db.session() as session:
        row = session.get(Delivery, ticket.id, with_for_update=not rt.db.is_sqlite)
        if row is None or row.attempts != ticket.attempts or row.state != "pending":
            return row.state if row is not None else "missing"  # someone else took over
        row.last_error = error[:2000]
        row.leased_until = None
        if row.first_failed_at is None:
            # The deadline runs from the first failure of this round of attempts.
            row.first_failed_at = now
            row.deadline = now + spec.deadline(rt.settings)
        first_failed = _aware(row.first_failed_at)
        if permanent or now >= _aware(row.deadline):
            row.state = "failed"
            row.result = "failed"
            row.done_at = now
            if spec.on_give_up is not None:
                spec.on_give_up(session, ticket, error)
            return "failed"
        delayed_after = rt.settings.outbox.email_delayed_after
        if spec.on_delayed is not None and row.warned_at is None and now - first_failed >= delayed_after:
            row.warned_at = now
            spec.on_delayed(session, ticket, error)
        row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(rt, row.attempts, hint))
        return "pending"


def _outcomes(rt: "Runtime", tickets: list[Ticket]) -> dict[int, object]:
    """Act on every ticket: kinds with a batch deliverer in one call, others one by one, in the
    order their first ticket came (a card before the lines in its thread)."""
    _note_lanes(tickets)
    outcomes: dict[int, object] = {}
    groups: dict[str, list[Ticket]] = {}
    for ticket in tickets:
        groups.setdefault(ticket.kind, []).append(ticket)
    for kind, group in groups.items():
        spec = SPECS.get(kind)
        if spec is None:  # a newer release owed it; its lease expires and a newer worker takes it
            log.error("deliveries %s: no deliverer registered for kind %r", [t.id for t in group], kind)
            for ticket in group:
                outcomes[ticket.id] = _UNKNOWN
            continue
        if spec.batch is not None and len(group) > 1:
            try:
                outcomes.update(spec.batch(rt, group))
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: each is retried
                for ticket in group:
                    outcomes[ticket.id] = exc
            continue
        for ticket in group:
            try:
                outcomes[ticket.id] = spec.fn(rt, ticket) or "done"
            except Exception as exc:  # noqa: BLE001 - recorded below, retried until the deadline
                outcomes[ticket.id] = exc
    return outcomes


_UNKNOWN = object()


def _settle(rt: "Runtime", tickets: list[Ticket], outcomes: dict[int, object]) -> tuple[dict[int, str], list[Ticket]]:
    """Record each outcome; returns (results by id, tickets to run again at once)."""
    results: dict[int, str] = {}
    finished: list[tuple[Ticket, str]] = []
    for ticket in tickets:
        outcome = outcomes.get(ticket.id, _UNKNOWN)
        if outcome is _UNKNOWN:
            results[ticket.id] = "unknown kind"
        elif isinstance(outcome, GiveUp):
            log.warning("delivery %s (%s) refused for good: %s", ticket.id, ticket.key, outcome)
            results[ticket.id] = _fail(rt, ticket, str(outcome), permanent=True, hint=None)
        elif isinstance(outcome, Retry):
            log.info("delivery %s (%s) not yet: %s", ticket.id, ticket.key, outcome)
            results[ticket.id] = _fail(rt, ticket, str(outcome), permanent=False, hint=outcome.after)
        elif isinstance(outcome, BaseException):
            log.warning("delivery %s (%s) failed (attempt %s): %s: %s", ticket.id, ticket.key,
                        ticket.attempts, outcome.__class__.__name__, outcome)
            results[ticket.id] = _fail(rt, ticket, f"{outcome.__class__.__name__}: {outcome}", permanent=False,
                                       hint=None)
        else:
            result = str(outcome or "done")
            results[ticket.id] = result
            finished.append((ticket, result))
    return results, _complete_many(rt, finished)


def deliver_many(rt: "Runtime", delivery_ids: Iterable[int]) -> dict[int, str]:
    """Claim, act and record these deliveries, several per statement; returns each one's result
    (or why it did not run: "not due")."""
    load_deliverers()
    ids = list(dict.fromkeys(delivery_ids))
    results: dict[int, str] = {}
    todo = ids
    for _ in range(MAX_RERUNS):
        tickets = claim_many(rt, todo)
        for delivery_id in todo:
            results.setdefault(delivery_id, "not due")
        if not tickets:
            break
        done, again = _settle(rt, tickets, _outcomes(rt, tickets))
        results.update(done)
        todo = [t.id for t in again]
        if not todo:
            break
    return {delivery_id: results[delivery_id] for delivery_id in ids}


def deliver(rt: "Runtime", delivery_id: int) -> str:
    """Claim, act and record one delivery; returns its result (or why it did not run)."""
    return deliver_many(rt, [delivery_id])[delivery_id]


class _LaneJob:
    """What an ``outbox.deliver`` job running in this thread delivers: the lanes of its tickets,
    and deliveries of those lanes owed meanwhile (an acknowledgment queued, then its email),
    which join this job instead of going through the queue."""

    def __init__(self, ids: list[int]) -> None:
        self.backlog = ids
        self.lanes: set[str] = set()


_running = threading.local()


def _note_lanes(tickets: list[Ticket]) -> None:
    job = getattr(_running, "job", None)
    if job is not None:
        job.lanes.update(SPECS[t.kind].lane for t in tickets if t.kind in SPECS)


@job("outbox.deliver", retries=0)
def deliver_job(rt: "Runtime", delivery_ids: list[int]) -> list[str]:
    """Deliver these rows (one lane's share of one commit), and what that lane is owed meanwhile."""
    outer = getattr(_running, "job", None)
    lane_job = _running.job = _LaneJob(list(delivery_ids))
    results: list[str] = []
    try:
        while lane_job.backlog:
            batch, lane_job.backlog = lane_job.backlog, []
            results.extend(deliver_many(rt, batch).values())
    finally:
        _running.job = outer
    return results


# The email lane's job is queued before the Slack lane's when one commit owes both (a new
# inquiry owes its card and its acknowledgment). When a single consumer thread is free (the
# other draining a backlog), the acknowledgment is then sent before the card is posted, and its
# ``ack_sent`` finds the card still pending: the card is posted once, already saying so, instead
# of posted and then updated (a second plan, render and Slack call per inquiry). With threads
# to spare the two jobs run side by side as before.
LANE_ORDER = ("email",)


def kick(rt: "Runtime", owed: Iterable[tuple[str, int]]) -> None:
    """Hand freshly committed deliveries to the queue, one job per lane (Slack, email; email
    first, see LANE_ORDER); those of the lane a job of this thread is delivering join that job."""
    load_deliverers()
    lanes: dict[str, list[int]] = {}
    for kind, delivery_id in owed:
        spec = SPECS.get(kind)
        lanes.setdefault(spec.lane if spec else "", []).append(delivery_id)
    running = getattr(_running, "job", None)
    for lane, ids in sorted(lanes.items(), key=lambda item: item[0] not in LANE_ORDER):
        if running is not None and lane in running.lanes:
            running.backlog.extend(ids)
            continue
        try:
            deliver_job.enqueue(rt, ids)
        except Exception:  # noqa: BLE001 - committed: the poller delivers it after the grace
            log.exception("could not enqueue deliveries %s; the poller will take them", ids)


def due_ids(rt: "Runtime", *, now: dt.datetime | None = None, limit: int = POLL_BATCH) -> list[int]:
    """Deliveries a poller should run now: retries whose time has come, leases that expired,
    and fresh rows whose kick (a queued job) seems lost."""
    now = now or utcnow()
    fresh_cutoff = now - rt.settings.outbox.kick_grace
    with rt.db.read_session() as session:
        return list(session.scalars(
            select(Delivery.id)
            .where(
                Delivery.state == "pending",
                Delivery.next_attempt_at <= now,
                or_(Delivery.leased_until.is_(None), Delivery.leased_until < now),
                or_(Delivery.attempts > 0, Delivery.next_attempt_at <= fresh_cutoff),
            )
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
        ))


def run_due(rt: "Runtime", *, now: dt.datetime | None = None, fresh_too: bool = False) -> dict[int, str]:
    """Deliver every due row in this thread (the poller; tests and `intake` commands call it).

    ``fresh_too`` also takes rows that were owed a moment ago and may still be in the queue.
    """
    now = now or utcnow()
    if fresh_too:
        with rt.db.read_session() as session:
            ids = list(session.scalars(
                select(Delivery.id)
                .where(Delivery.state == "pending", Delivery.next_attempt_at <= now,
                       or_(Delivery.leased_until.is_(None), Delivery.leased_until < now))
                .order_by(Delivery.id).limit(POLL_BATCH)
            ))
    else:
        ids = due_ids(rt, now=now)
    return deliver_many(rt, ids)


class Poller:
    """A daemon thread in each worker process: every ``[outbox] poll_seconds`` it delivers what
    is due. Retries and lost kicks wait seconds, not the queue's one-minute periodic tick."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-poller", daemon=True)

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.rt.settings.outbox.poll_seconds
        while not self._stop.wait(interval):
            try:
                run_due(self.rt)
            except Exception:  # noqa: BLE001 - the database may be down; try again next time
                log.exception("outbox poll failed")


def pending_summary(rt: "Runtime") -> dict[str, int]:
    """Counts by state (for `intake` commands and health checks)."""
    from sqlalchemy import func

    with rt.db.read_session() as session:
        return dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())


__all__ = ["Poller", "backoff_seconds", "claim", "claim_many", "deliver", "deliver_job", "deliver_many",
           "due_ids", "kick", "lease_left", "pending_summary", "run_due", "still_ours", "still_ours_many"]
