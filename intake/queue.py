"""The job queue: huey, embedded in SQLite by default, in Redis when ``REDIS_URL`` is set.

Why huey: it has both backends we need behind one API (no server for the embedded default, Redis
for many workers on many machines), retries with exponential backoff, delayed and periodic tasks,
and it measured fastest of the candidates (see DESIGN.md). It does not make delivery durable
against a worker killed mid-task (the task is lost), so the database row's state stays the truth:
every job is idempotent and ``pipeline.sweep`` re-enqueues rows left unfinished.

``HueyQueue`` implements the ``Queue`` protocol of ``intake.runtime``. Every job in
``intake.jobs.REGISTRY`` becomes a huey task of the same name; a periodic job (``@periodic``)
becomes a huey periodic task and is also enqueued once when a consumer starts, so a restarted
worker sweeps at once instead of at the next scheduled minute.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from typing import TYPE_CHECKING, Any, Callable

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from intake.config import Settings
from intake.jobs import REGISTRY, JobHandle, load_jobs, run_job

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_QUEUE_PATH = "intake-queue.db"
# Each retry waits this many times longer than the one before (JobSpec.retry_delay first).
RETRY_BACKOFF = 2.0
# The embedded queue polls SQLite; keep the longest sleep short so a job starts within ~0.5 s.
POLL_INITIAL_DELAY = 0.05
POLL_MAX_DELAY = 0.5
POLL_BACKOFF = 1.15


def make_huey(settings: Settings, name: str | None = None) -> Huey:
    name = name or settings.queue_name
    if settings.redis_url:
        # Results are never read (jobs report through the database), so none are stored.
        return RedisHuey(name, url=settings.redis_url, results=False)
    path = settings.queue_path or os.path.abspath(DEFAULT_QUEUE_PATH)
    return SqliteHuey(name, filename=path, results=False, timeout=30)


def every(seconds: float) -> Callable[[dt.datetime], bool]:
    """A huey ``validate_datetime`` for "every N seconds", at huey's one-minute resolution."""
    minutes = max(1, round(seconds / 60))

    def validate(now: dt.datetime) -> bool:
        return (now.hour * 60 + now.minute) % minutes == 0

    return validate


def load_extra_job_modules() -> None:
    """``INTAKE_EXTRA_JOB_MODULES`` (comma-separated) adds job modules: plugins and tests."""
    for module in filter(None, (m.strip() for m in os.environ.get("INTAKE_EXTRA_JOB_MODULES", "").split(","))):
        importlib.import_module(module)


class HueyQueue:
    """The ``Queue`` the web app and workers use; jobs run as ``fn(rt, *args)`` in the consumer."""

    def __init__(self, settings: Settings, huey: Huey | None = None, *, name: str | None = None):
        self.settings = settings
        self.huey = huey or make_huey(settings, name)
        self.rt: "Runtime | None" = None
        self.tasks: dict[str, TaskWrapper] = {}
        load_jobs()
        load_extra_job_modules()
        self._register_new()

    @property
    def is_embedded(self) -> bool:
        return isinstance(self.huey, SqliteHuey)

    def bind(self, rt: "Runtime") -> None:
        self.rt = rt

    def _register_new(self) -> None:
        for spec in list(REGISTRY.values()):
            if spec.name not in self.tasks:
                self.tasks[spec.name] = self._wrap(spec)

    def _wrap(self, spec: JobHandle) -> TaskWrapper:
        def run(*args: Any) -> None:
            if self.rt is None:
                raise RuntimeError("HueyQueue used before bind(rt)")
            run_job(self.rt, spec.name, *args)

        run.__doc__ = spec.fn.__doc__
        if spec.every_seconds:
            return self.huey.periodic_task(every(spec.every_seconds), name=spec.name)(run)
        return self.huey.task(
            retries=spec.retries,
            retry_delay=spec.retry_delay,
            retry_backoff=RETRY_BACKOFF,
            name=spec.name,
        )(run)

    def enqueue(self, name: str, *args: Any, delay: float | None = None) -> None:
        task = self.tasks.get(name)
        if task is None:  # a job module imported after this queue was built
            self._register_new()
            task = self.tasks.get(name)
        if task is None:
            raise LookupError(f"no job called {name!r}")
        if delay:
            task.schedule(args=args, delay=delay)
        else:
            task(*args)

    def ping(self) -> None:
        """Touch the storage (a SQLite query or a Redis round trip); raises when it is down."""
        self.huey.pending_count()

    def periodic_names(self) -> list[str]:
        return [spec.name for spec in REGISTRY.values() if spec.every_seconds]

    def enqueue_periodic_now(self) -> None:
        """Enqueue the periodic jobs huey's scheduler will not run this minute anyway."""
        now = self.huey._get_timestamp()
        for name in self.periodic_names():
            task = self.tasks[name]
            if task.task_class().validate_datetime(now):
                continue  # the consumer's scheduler enqueues it as it starts
            try:
                task()
            except Exception:  # noqa: BLE001 - the scheduler will run it at its next turn
                log.exception("could not enqueue periodic job %s at start", name)

    def run_consumer(self, workers: int = 2) -> None:
        """Run huey's consumer in this (main) thread until SIGINT/SIGTERM."""
        self.enqueue_periodic_now()
        consumer = self.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=True,
            initial_delay=POLL_INITIAL_DELAY,
            backoff=POLL_BACKOFF,
            max_delay=POLL_MAX_DELAY,
            check_worker_health=True,
        )
        consumer.run()


def make_queue(settings: Settings) -> HueyQueue:
    return HueyQueue(settings)
