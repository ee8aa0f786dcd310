"""The composition root for everything that is not a web request: settings, database, queue.

One ``Runtime`` per process (web app, worker, CLI command, test). Jobs receive it as their first
argument, so they never reach for globals.
"""

from __future__ import annotations

from typing import Any, Protocol

from intake.config import Settings
from intake.db import Database


class Queue(Protocol):
    def bind(self, rt: "Runtime") -> None: ...
    def enqueue(self, name: str, *args: Any, delay: float | None = None) -> None: ...
    def ping(self) -> None: ...


class Runtime:
    """``queue`` has no default on purpose: whether jobs run inline (CLI, tests) or on huey (web,
    worker, Socket Mode) is the composition root's decision, never a silent fallback. Jobs are
    enqueued through their handles (``intake.jobs.JobHandle.enqueue``)."""

    def __init__(self, settings: Settings, db: Database | None = None, *, queue: Queue):
        self.settings = settings
        self.db = db or Database.from_settings(settings)
        self.queue = queue
        self.queue.bind(self)
        self.db.on_owed = self._kick
        # Built on first use by the layers that need them (Slack client, SMTP, classifier).
        self.services: dict[str, Any] = {}

    def _kick(self, owed: list[Any]) -> None:
        from intake.outbox.worker import kick

        kick(self, owed)

    def service(self, key: str, factory) -> Any:
        """A lazily built, per-process object (a client or a loaded model), cached by key."""
        if key not in self.services:
            self.services[key] = factory(self)
        return self.services[key]
