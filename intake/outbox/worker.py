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

from sqlalchemy import or_, select, update

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


def claim(rt: "Runtime", delivery_id: int, *, now: dt.datetime | None = None) -> Ticket | None:
    """Lease the row if it is pending, due and free; None when it is not ours to deliver now."""
    now = now or utcnow()
    table = Delivery.__table__
    with rt.db.session() as session:
        row = session.execute(
            update(table)
            .where(
                table.c.id == delivery_id,
                table.c.state == "pending",
                table.c.next_attempt_at <= now,
                or_(table.c.leased_until.is_(None), table.c.leased_until < now),
            )
            .values(attempts=table.c.attempts + 1, leased_until=now + rt.settings.outbox.lease)
            .returning(table.c.id, table.c.key, table.c.kind, table.c.inquiry_id, table.c.args,
                       table.c.attempts, table.c.requested, table.c.created_at)
        ).first()
    if row is None:
        return None
    return Ticket(row.id, row.key, row.kind, row.inquiry_id, dict(row.args or {}), row.attempts,
                  row.requested, _aware(row.created_at))


def still_ours(rt: "Runtime", ticket: Ticket) -> bool:
    """Whether this attempt still holds the delivery's lease: checked right before an act that
    cannot be taken back (a post, an SMTP transaction), so an attempt that outlived its lease
    (a stalled process) never acts beside the attempt that took over."""
    table = Delivery.__table__
    with rt.db.read_session() as session:
        row = session.execute(
            select(table.c.attempts, table.c.leased_until, table.c.state).where(table.c.id == ticket.id)
        ).first()
    if row is None or row.state != "pending" or row.attempts != ticket.attempts:
        return False
    leased_until = _aware(row.leased_until)
    return leased_until is not None and leased_until > utcnow()


def _complete(rt: "Runtime", ticket: Ticket, result: str) -> bool:
    """Mark done (or pending again if re-requested meanwhile); True when it must run again."""
    table = Delivery.__table__
    now = utcnow()
    with rt.db.session() as session:
        done = session.execute(
            update(table)
            .where(table.c.id == ticket.id, table.c.attempts == ticket.attempts,
                   table.c.requested == ticket.requested)
            .values(state="done", leased_until=None, result=result[:64], done_at=now, last_error=None,
                    first_failed_at=None)
        ).rowcount
        if done:
            return False
        # Asked for again while we worked (a coalescing card update): run once more, now.
        session.execute(
            update(table)
            .where(table.c.id == ticket.id, table.c.attempts == ticket.attempts)
            .values(leased_until=None, next_attempt_at=now, attempts=0, result=result[:64],
                    first_failed_at=None)
        )
        return True


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


def deliver(rt: "Runtime", delivery_id: int) -> str:
    """Claim, act and record one delivery; returns its result (or why it did not run)."""
    load_deliverers()
    for _ in range(MAX_RERUNS):
        ticket = claim(rt, delivery_id)
        if ticket is None:
            return "not due"
        spec = SPECS.get(ticket.kind)
        if spec is None:  # a newer release owed it; its lease expires and a newer worker takes it
            log.error("delivery %s: no deliverer registered for kind %r", delivery_id, ticket.kind)
            return "unknown kind"
        try:
            result = spec.fn(rt, ticket) or "done"
        except GiveUp as exc:
            log.warning("delivery %s (%s) refused for good: %s", ticket.id, ticket.key, exc)
            return _fail(rt, ticket, str(exc), permanent=True, hint=None)
        except Retry as exc:
            log.info("delivery %s (%s) not yet: %s", ticket.id, ticket.key, exc)
            return _fail(rt, ticket, str(exc), permanent=False, hint=exc.after)
        except Exception as exc:  # noqa: BLE001 - any failure is retried until the deadline
            log.warning("delivery %s (%s) failed (attempt %s): %s: %s", ticket.id, ticket.key,
                        ticket.attempts, exc.__class__.__name__, exc)
            return _fail(rt, ticket, f"{exc.__class__.__name__}: {exc}", permanent=False, hint=None)
        if not _complete(rt, ticket, result):
            return result
    return result


@job("outbox.deliver", retries=0)
def deliver_job(rt: "Runtime", delivery_ids: list[int]) -> list[str]:
    """Deliver these rows one after another (one lane's share of one commit)."""
    return [deliver(rt, delivery_id) for delivery_id in delivery_ids]


def kick(rt: "Runtime", owed: Iterable[tuple[str, int]]) -> None:
    """Hand freshly committed deliveries to the queue, one job per lane (Slack, email)."""
    load_deliverers()
    lanes: dict[str, list[int]] = {}
    for kind, delivery_id in owed:
        spec = SPECS.get(kind)
        lanes.setdefault(spec.lane if spec else "", []).append(delivery_id)
    for ids in lanes.values():
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
    return {delivery_id: deliver(rt, delivery_id) for delivery_id in ids}


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


__all__ = ["Poller", "backoff_seconds", "claim", "deliver", "deliver_job", "due_ids", "kick",
           "pending_summary", "run_due", "still_ours"]
