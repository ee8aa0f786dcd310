"""Background jobs: a registry of plain functions, run by whichever queue the runtime has.

A job is a function ``fn(rt: Runtime, *args)`` registered by name with :func:`job`, which returns
a :class:`JobHandle`: callers import the handle and write ``process_message_job.enqueue(rt, 12)``,
so a reader (or a tool) can follow the pipeline from caller to job; the queue still registers
and transports jobs by name. Layers keep their jobs in their own modules (listed in
``JOB_MODULES``); nothing is bound to a queue at import time, so tests and the CLI can run the
same jobs inline while ``intake serve``/``intake worker``/``intake slack socket`` run them on
huey (see ``intake/queue.py``).

Every job must be idempotent: delivery is at-least-once, and the database row's state, not the
queue, is the truth about what has been done.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

JobFn = Callable[..., Any]

# Modules that register jobs.
JOB_MODULES = (
    "intake.pipeline",
    "intake.outbox.worker",
    "intake.slack.deliveries",
    "intake.grouping.jobs",  # issue 16: groups.refresh
    "intake.sla.jobs",  # sla.tick: response-target reminders, the daily digest, the weekly report
    "intake.privacy.jobs",  # the daily retention run
)


@dataclass(frozen=True)
class JobHandle:
    """A registered job: call it to run it here and now, ``enqueue`` it to run it on the queue."""

    name: str
    fn: JobFn
    retries: int = 5
    retry_delay: float = 5.0  # first retry after this many seconds, doubling each time
    every_seconds: float | None = None  # set for periodic jobs (no arguments)

    def __call__(self, rt: "Runtime", *args: Any) -> Any:
        return self.fn(rt, *args)

    def enqueue(self, rt: "Runtime", *args: Any, delay: float | None = None) -> None:
        """Hand the job to ``rt``'s queue (by name: that is what crosses to a worker process)."""
        rt.queue.enqueue(self.name, *args, delay=delay)


REGISTRY: dict[str, JobHandle] = {}


def job(name: str, *, retries: int = 5, retry_delay: float = 5.0) -> Callable[[JobFn], JobHandle]:
    """Register ``fn(rt, *args)`` as the job called ``name``."""

    def register(fn: JobFn) -> JobHandle:
        handle = REGISTRY[name] = JobHandle(name, fn, retries, retry_delay)
        return handle

    return register


def periodic(name: str, *, every_seconds: float) -> Callable[[JobFn], JobHandle]:
    """Register ``fn(rt)`` to run every ``every_seconds`` on one worker."""

    def register(fn: JobFn) -> JobHandle:
        handle = REGISTRY[name] = JobHandle(name, fn, retries=0, retry_delay=0, every_seconds=every_seconds)
        return handle

    return register


def load_jobs() -> dict[str, JobSpec]:
    for module in JOB_MODULES:
        importlib.import_module(module)
    return REGISTRY


def run_job(rt: "Runtime", name: str, *args: Any) -> Any:
    load_jobs()
    try:
        handle = REGISTRY[name]
    except KeyError:
        raise LookupError(f"no job called {name!r}") from None
    return handle(rt, *args)


class _ThreadJobs(threading.local):
    """One thread's jobs waiting to run inline, and whether that thread is already running them."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, tuple[Any, ...]]] = []
        self.running = False


class InlineQueue:
    """Runs each job at once in the caller (CLI ingest, tests): same code path, no worker.

    Jobs enqueued by a running job are run after it finishes, in order, so the call stack stays
    flat and a job never sees its caller's half-finished transaction. The bookkeeping is per
    thread: a web request and a Slack listener thread each run their own jobs.
    """

    def __init__(self) -> None:
        self.rt: "Runtime | None" = None
        self._local = _ThreadJobs()
        self.errors: list[tuple[str, tuple[Any, ...], BaseException]] = []
        self.raise_errors = True

    def bind(self, rt: "Runtime") -> None:
        self.rt = rt

    def enqueue(self, name: str, *args: Any, delay: float | None = None) -> None:
        if delay:
            # Nothing here waits: what was meant for later is in the database (an unprocessed
            # message, a delivery backing off) and a worker's sweep or poller runs it then.
            log.debug("inline queue: %s%r deferred to the worker (delay %ss)", name, args, delay)
            return
        local = self._local
        local.pending.append((name, args))
        if local.running:
            return
        local.running = True
        try:
            while local.pending:
                job_name, job_args = local.pending.pop(0)
                assert self.rt is not None, "InlineQueue used before bind()"
                try:
                    run_job(self.rt, job_name, *job_args)
                except Exception as exc:
                    self.errors.append((job_name, job_args, exc))
                    log.exception("job %s%r failed", job_name, job_args)
                    if self.raise_errors:
                        local.pending.clear()
                        raise
        finally:
            local.running = False

    def ping(self) -> None:
        return None
