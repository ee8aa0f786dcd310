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
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

from sqlalchemy import delete, select

from intake import inquiries
from intake.jobs import job, periodic
from intake.models import Message, SeenNonce, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)
R = TypeVar("R")

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


class _Drainer:
    """One thread per process drains the waiting messages; a job arriving while it runs leaves
    its message to it and returns.

    Each batch is parsed before its transaction opens, so two threads reading the oldest
    waiting messages at once would both parse the same batch and one would then find it
    claimed: with a deep queue that tripled the parsing. One drainer also keeps a process's
    batches in arrival order (a follow-up in the next batch sees the inquiry the previous one
    opened). A request made while the drainer runs is never lost: it is noted before the
    drainer's lock is tried, and the drainer looks for notes again after letting go of it.
    """

    def __init__(self, _rt: "Runtime") -> None:
        self._running = threading.Lock()
        self._notes = threading.Lock()
        self._requested = False
        self._first_ids: list[int] = []
        self._owner: int | None = None  # the thread draining

    def request(self, first_id: int | None) -> None:
        with self._notes:
            self._requested = True
            if first_id is not None:
                self._first_ids.append(first_id)

    def take(self) -> tuple[bool, list[int]]:
        with self._notes:
            requested, first_ids = self._requested, self._first_ids
            self._requested, self._first_ids = False, []
        return requested, first_ids

    def pending(self) -> bool:
        with self._notes:
            return self._requested

    def drain(self, work: Callable[[list[int]], list[R]], first_id: int | None, *, wait: bool = False) -> list[R]:
        """Ask for a drain (``first_id`` among the messages wanted) and run ``work(first_ids)``
        for every request noted while this thread holds the drainer; returns at once when
        another thread holds it, or with ``wait`` (jobs run inline, whose callers expect the
        message processed on return) waits for it and then drains."""
        if self._owner == threading.get_ident():  # an inline job inside a drain: as it always ran
            return work([first_id] if first_id is not None else [])
        self.request(first_id)
        results: list[R] = []
        while True:
            if not self._running.acquire(blocking=wait):
                return results  # the running drainer will see the request
            self._owner = threading.get_ident()
            try:
                # Having waited, drain once whatever the notes say: the drainer we waited for
                # may have taken our note, and this call must still process (or raise for) its
                # own message.
                own = [first_id] if wait and first_id is not None else []
                while True:
                    requested, first_ids = self.take()
                    if not (requested or wait):
                        break
                    results.extend(work(own + first_ids))
                    own, wait = [], False
            finally:
                self._owner = None
                self._running.release()
            if not self.pending():  # noted after our last look and before the release: ours
                return results


def _drainer(rt: "Runtime") -> _Drainer:
    return rt.service("pipeline.drainer", _Drainer)


def process_waiting(rt: "Runtime", first_id: int | None = None) -> list[inquiries.ProcessResult]:
    """Process waiting messages, a batch per transaction, until none is left (``first_id``
    first if it is waiting); when another thread of this process is doing so already, leave
    them to it (see _Drainer) and return nothing. A batch that fails is retried one message
    at a time, so one message that cannot be processed never holds up the others; that
    message's failure is counted and, when it is the ``first_id`` of this call, raised (its
    job is retried)."""
    from intake.jobs import InlineQueue

    return _drainer(rt).drain(lambda first_ids: _drain(rt, first_ids, raise_for=first_id), first_id,
                              wait=isinstance(rt.queue, InlineQueue))


def _drain(rt: "Runtime", first_ids: list[int], raise_for: int | None) -> list[inquiries.ProcessResult]:
    """Batches until fewer than a batch are waiting; ``first_ids`` (messages whose jobs asked)
    join the first batch even when earlier failures keep them out of the oldest."""
    results: list[inquiries.ProcessResult] = []
    taken_elsewhere: set[int] = set()  # claimed by another process meanwhile: not read again
    while True:
        with rt.db.read_session() as reader:
            waiting = inquiries.waiting_messages(reader, limit=BATCH, first_ids=first_ids, skip=taken_elsewhere)
        if not waiting:
            return results
        done = process_batch(rt, waiting, raise_for if raise_for in first_ids else None)
        results.extend(done)
        processed = {r.message_id for r in done}
        taken_elsewhere.update(message_id for message_id, _, _ in waiting if message_id not in processed)
        if len(waiting) < BATCH:
            return results
        first_ids = []


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
