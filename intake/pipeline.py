"""The jobs that carry a stored message through the domain, and the sweeper that guards them.

The webhook commits the raw message and then enqueues ``pipeline.process_message``. If the
process dies between the commit and the enqueue, or a worker is killed mid-job (huey loses a
task that way), the message row stays in state ``received`` and the periodic sweeper enqueues
it again. Processing is idempotent, so a message enqueued twice is processed once. Everything
processing owes afterwards is an outbox delivery committed with it (intake/outbox/).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import delete, select

from intake import inquiries
from intake.jobs import job, periodic
from intake.models import Message, SeenNonce, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# A message younger than this may still be on its way through the queue; older ones are stuck.
STUCK_AFTER = dt.timedelta(minutes=2)
SWEEP_EVERY_SECONDS = 60
SWEEP_BATCH = 500
NONCE_TTL = dt.timedelta(days=2)


# Messages processed in one transaction when several are waiting: large enough to share the
# database round trips and the classifier's call, small enough that the first cards of a burst
# are not held back long (a batch takes well under a second).
BATCH = 25


class _Recent:
    """Ids of messages this runtime processed lately: a job for one of them (every stored message
    has its job, and a batch processes several) is answered without asking the database."""

    def __init__(self, size: int = 20_000) -> None:
        self._ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, ids: Iterable[int]) -> None:
        with self._lock:
            for message_id in ids:
                self._ids[message_id] = None
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def __contains__(self, message_id: int) -> bool:
        with self._lock:
            return message_id in self._ids


def _recent(rt: "Runtime") -> _Recent:
    return rt.service("pipeline.recent", lambda _rt: _Recent())


def process_stored(rt: "Runtime", message_id: int) -> inquiries.ProcessResult:
    """Process one stored message in its own transaction. What it owes (card, acknowledgment,
    thread line) commits with it and is handed to the outbox's workers after the commit."""
    with rt.db.session() as session:
        result = inquiries.process_message(session, rt, message_id)
    _recent(rt).add([message_id])
    return result


def process_waiting(rt: "Runtime", first_id: int | None = None) -> list[inquiries.ProcessResult]:
    """Process waiting messages, a batch per transaction, until none is left (``first_id``
    first if it is waiting). A batch that fails is retried one message at a time, so one
    message that cannot be processed never holds up the others; that message's failure is
    counted and, when it is ``first_id``, raised (its job is retried)."""
    results: list[inquiries.ProcessResult] = []
    while True:
        with rt.db.read_session() as reader:
            waiting = inquiries.waiting_messages(reader, limit=BATCH, first_id=first_id)
        if not waiting:
            return results
        results.extend(process_batch(rt, waiting, first_id))
        if len(waiting) < BATCH:
            return results
        first_id = None


def process_ids(rt: "Runtime", ids: list[int]) -> list[inquiries.ProcessResult]:
    """Process these stored messages (those still waiting), a batch per transaction: what
    `intake ingest` stored a moment ago. Results in the order of ``ids``, for those processed."""
    results: list[inquiries.ProcessResult] = []
    for start in range(0, len(ids), BATCH):
        with rt.db.read_session() as reader:
            waiting = inquiries.waiting_messages(reader, limit=BATCH, ids=ids[start:start + BATCH])
        if waiting:
            results.extend(process_batch(rt, waiting, None))
    return results


def process_batch(rt: "Runtime", waiting: list[tuple[int, bytes, dict | None]],
                  first_id: int | None) -> list[inquiries.ProcessResult]:
    """Prepare (parse) these messages with no transaction open, then thread, classify and record
    them in one transaction (those another worker took meanwhile are left to it)."""
    prepared = {message_id: inquiries.prepare(rt, raw, meta, message_id) for message_id, raw, meta in waiting}
    ids = [message_id for message_id, _, _ in waiting]
    try:
        with rt.db.session() as session:
            batch = inquiries.claim_received(session, ids)
            done = inquiries.process_messages(session, rt, batch, prepared) if batch else []
    except Exception:
        log.exception("a batch of %d messages failed; processing them one at a time", len(ids))
        done = _one_at_a_time(rt, ids, first_id)
    _recent(rt).add(r.message_id for r in done)
    return done


def _one_at_a_time(rt: "Runtime", ids: list[int], first_id: int | None) -> list[inquiries.ProcessResult]:
    done, failed_first = [], None
    for message_id in ids:
        try:
            done.append(process_stored(rt, message_id))
        except Exception as exc:  # noqa: BLE001 - counted; batches skip it after a few tries
            log.exception("processing message %s failed", message_id)
            with rt.db.session() as session:
                inquiries.record_failure(session, message_id, f"{exc.__class__.__name__}: {exc}")
            if message_id == first_id:
                failed_first = exc
    if failed_first is not None:
        raise failed_first
    return done


class _Doorbell:
    """Asks the workers to process stored messages at most once every ``WINDOW`` per process.

    The job it enqueues processes every message waiting (process_waiting), so one request per
    window is enough; a message stored after a ring gets a trailing ring at the end of the
    window (a timer), issued after its commit, so it is never left to the sweeper. An enqueue
    (huey's task, a Redis round trip) cost a webhook request more CPU than storing the message;
    under load this leaves a few per second per web process. A request alone rings at once, as
    before; a burst's later messages wait at most ``WINDOW`` more.
    """

    WINDOW = 0.25

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._waiting: int | None = None  # the newest message stored since the last ring
        self._timer: threading.Timer | None = None

    def ring(self, message_id: int) -> None:
        with self._lock:
            now = time.monotonic()
            if self._timer is None and now - self._last >= self.WINDOW:
                self._last = now
            else:
                self._waiting = message_id
                if self._timer is None:
                    self._timer = threading.Timer(max(0.0, self._last + self.WINDOW - now), self._trailing)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self._enqueue(message_id)

    def _trailing(self) -> None:
        with self._lock:
            message_id, self._waiting, self._timer = self._waiting, None, None
            self._last = time.monotonic()
        if message_id is not None:
            self._enqueue(message_id)

    def _enqueue(self, message_id: int) -> None:
        try:
            process_message_job.enqueue(self.rt, message_id)
        except Exception:  # noqa: BLE001 - stored and committed: the sweeper will enqueue it
            log.exception("enqueue of message %s failed; the sweeper will pick it up", message_id)


def request_processing(rt: "Runtime", message_id: int) -> None:
    """Ask for a committed message to be processed: at once when jobs run inline (the CLI, tests),
    otherwise through the process's doorbell (one job per window for every message stored)."""
    from intake.jobs import InlineQueue

    if isinstance(rt.queue, InlineQueue):
        process_message_job.enqueue(rt, message_id)
        return
    rt.service("pipeline.doorbell", _Doorbell).ring(message_id)


@job("pipeline.process_message", retries=5, retry_delay=5)
def process_message_job(rt: "Runtime", message_id: int) -> str:
    """Process this message and whatever else is waiting (see process_waiting)."""
    if message_id in _recent(rt):
        return "processed"
    done = process_waiting(rt, message_id)
    return f"processed {len(done)}"


def find_stuck(rt: "Runtime", *, older_than: dt.timedelta = STUCK_AFTER, now: dt.datetime | None = None) -> list[int]:
    """Ids of inbound messages stored but never processed, oldest first."""
    cutoff = (now or utcnow()) - older_than
    with rt.db.read_session() as session:
        return list(
            session.scalars(
                select(Message.id)
                .where(Message.state == "received", Message.created_at < cutoff)
                .order_by(Message.id)
                .limit(SWEEP_BATCH)
            )
        )


@periodic("pipeline.sweep", every_seconds=SWEEP_EVERY_SECONDS)
def sweep(rt: "Runtime") -> dict[str, int]:
    """Re-enqueue stored messages a crash left unprocessed, and forget replay nonces nobody can
    reuse. (Deliveries need no sweep here: the outbox poller finds every one that is due.)"""
    inbound = find_stuck(rt)
    for message_id in inbound:
        process_message_job.enqueue(rt, message_id)
    with rt.db.session() as session:
        session.execute(delete(SeenNonce).where(SeenNonce.seen_at < utcnow() - NONCE_TTL))
    if inbound:
        log.warning("sweeper re-enqueued %d unprocessed messages", len(inbound))
    return {"inbound": len(inbound)}
