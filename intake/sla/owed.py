"""What the SLA loop owes staff, made once per key: a stand-in with the API of ``intake.outbox``.

The lead's transactional outbox (``outbox.owe`` / ``@outbox.deliverer``) is not on main yet. This
module offers the same two calls, backed by ``sla_runs`` rows, so the callers change by one import
when it lands:

- :func:`owe` writes a row in the caller's transaction; its unique ``key`` (a run key per period,
  or per inquiry, stage and target) makes the same thing owed once, however many workers decide
  it at the same moment and however often a job is retried or a process restarted.
- :func:`deliver_owed` (run by the ``sla.tick`` periodic job) claims each due row with one
  conditional UPDATE (a lease, so two workers never deliver the same row at once), calls its
  deliverer with no transaction open, and records the outcome: done, or retried with backoff until
  the deliverer's deadline, then given up with the error kept.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from intake.inquiries import _dialect_insert
from intake.models import SlaRun, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# How long a worker may take to deliver a row before another may try it again.
LEASE = dt.timedelta(minutes=5)
FIRST_RETRY = dt.timedelta(seconds=30)
MAX_RETRY = dt.timedelta(minutes=30)
BATCH = 50


@dataclass(frozen=True)
class Delivery:
    id: int
    key: str
    kind: str
    inquiry_id: int | None
    args: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Deliverer:
    kind: str
    fn: Callable[["Runtime", Delivery], Any]
    deadline: dt.timedelta


DELIVERERS: dict[str, Deliverer] = {}


def deliverer(kind: str, *, deadline: dt.timedelta = dt.timedelta(hours=6)):
    """Register ``fn(rt, delivery) -> result`` for ``kind``; raise to be retried with backoff."""

    def register(fn):
        DELIVERERS[kind] = Deliverer(kind, fn, deadline)
        return fn

    return register


def owe(session: Session, kind: str, *, key: str, inquiry_id: int | None = None,
        args: dict[str, Any] | None = None, not_before: dt.datetime | None = None) -> bool:
    """Owe ``kind`` once for ``key``, in the caller's transaction; True when it is newly owed."""
    now = utcnow()
    # INSERT ... ON CONFLICT DO NOTHING: the unique key decides between concurrent workers
    # without a savepoint or a retry loop (the same statement store_raw uses).
    insert = _dialect_insert(session.connection().dialect.name)
    inserted = session.execute(
        insert(SlaRun.__table__)
        .values(key=key[:200], kind=kind, inquiry_id=inquiry_id, args=args or {}, created_at=now,
                not_before=not_before or now, attempts=0)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(SlaRun.__table__.c.id)
    ).scalar()
    return inserted is not None


def owed_keys(session: Session, keys: list[str]) -> set[str]:
    """Which of these keys are already owed (delivered or not): to skip deciding them again."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        found.update(session.scalars(select(SlaRun.key).where(SlaRun.key.in_(keys[i:i + 500]))))
    return found


def _backoff(attempts: int) -> dt.timedelta:
    return min(MAX_RETRY, FIRST_RETRY * (2 ** max(0, attempts - 1)))


def _claim(rt: "Runtime", row_id: int, now: dt.datetime) -> Delivery | None:
    with rt.db.session() as session:
        claimed = session.execute(
            update(SlaRun)
            .where(SlaRun.id == row_id, SlaRun.done_at.is_(None), SlaRun.not_before <= now)
            .values(attempts=SlaRun.attempts + 1, not_before=now + LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            return None
        row = session.get(SlaRun, row_id)
        assert row is not None
        session.refresh(row)
        return Delivery(row.id, row.key, row.kind, row.inquiry_id, dict(row.args or {}), row.attempts)


def _finish(rt: "Runtime", delivery: Delivery, *, result: Any = None, error: str | None = None,
            retry_at: dt.datetime | None = None) -> None:
    with rt.db.session() as session:
        values: dict[str, Any] = {"last_error": error}
        if retry_at is not None:
            values["not_before"] = retry_at
        else:
            values["done_at"] = utcnow()
            values["result"] = result if isinstance(result, dict) else {"outcome": result}
        session.execute(update(SlaRun).where(SlaRun.id == delivery.id).values(**values))


def deliver_one(rt: "Runtime", delivery: Delivery, now: dt.datetime) -> str:
    spec = DELIVERERS.get(delivery.kind)
    if spec is None:
        _finish(rt, delivery, error=f"no deliverer for {delivery.kind!r}", retry_at=now + MAX_RETRY)
        return "unknown"
    try:
        result = spec.fn(rt, delivery)
    except Exception as exc:  # Slack down, rate limited, a bug: retried until the deadline
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        with rt.db.read_session() as session:
            created = session.scalar(select(SlaRun.created_at).where(SlaRun.id == delivery.id))
        created = created.replace(tzinfo=dt.timezone.utc) if created and created.tzinfo is None else created
        if created is not None and now - created > spec.deadline:
            log.error("giving up on %s after %d attempts: %s", delivery.key, delivery.attempts, error)
            _finish(rt, delivery, result={"gave_up": True}, error=error)
            return "gave_up"
        log.warning("delivering %s failed (attempt %d), retrying: %s", delivery.key, delivery.attempts, error)
        _finish(rt, delivery, error=error, retry_at=now + _backoff(delivery.attempts))
        return "retry"
    _finish(rt, delivery, result=result)
    return "done"


def deliver_owed(rt: "Runtime", now: dt.datetime | None = None) -> dict[str, int]:
    """Deliver every row that is due and not leased by another worker; counts by outcome."""
    now = now or utcnow()
    with rt.db.session() as session:
        ids = list(session.scalars(
            select(SlaRun.id).where(SlaRun.done_at.is_(None), SlaRun.not_before <= now)
            .order_by(SlaRun.id).limit(BATCH)
        ))
    counts: dict[str, int] = {}
    for row_id in ids:
        delivery = _claim(rt, row_id, now)
        if delivery is None:
            continue  # another worker has it
        outcome = deliver_one(rt, delivery, now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
