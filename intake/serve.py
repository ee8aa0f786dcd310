"""``intake serve`` (gunicorn + the embedded worker) and ``intake worker`` (the huey consumer).

With the embedded SQLite queue, ``intake serve`` alone is a working system: the gunicorn master
starts the consumer as a child process (``python -m intake.serve worker --exit-with-parent``) once
it is ready, restarts it if it dies, and stops it on exit. A separate process rather than a thread
in the master, because the master forks web workers and a forked copy of a running consumer
(threads, SQLite connections) is undefined behaviour; a thread in the master only watches the
child. The child exits on its own if the master disappears (even by SIGKILL).

With ``REDIS_URL`` set, ``intake serve`` runs only the web app and ``intake worker`` processes
(any number, anywhere) run the jobs. The Procfile's ``web: gunicorn 'intake.app:create_app()'``
serves the same app; it does not start a worker, so pair it with ``worker: intake worker``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import click

from intake import logs
from intake.config import ConfigError, Settings

# Named, not __name__: the embedded consumer runs this module as __main__.
log = logging.getLogger("intake.serve")

RESTART_BACKOFF_MAX = 30.0
# How long an orphaned consumer gets for each step of stopping (jobs are idempotent and a
# stranded one is re-enqueued by the sweeper, so a hard stop loses nothing).
ORPHAN_GRACE_SECONDS = 5.0
# The supervisor's pid, handed to the consumer it starts (see _exit_with_parent).
PARENT_PID_ENV = "INTAKE_SUPERVISOR_PID"
STOP_TIMEOUT = 10.0


def _configure_logging() -> None:
    """INFO for everything (each job a line), unless INTAKE_LOG_LEVEL says otherwise."""
    try:
        logs.configure(intake_level="INFO", other_level="INFO", fmt=logs.SERVER_FORMAT)
    except logs.LogLevelError as exc:
        raise click.ClickException(str(exc)) from None


def _load_settings() -> Settings:
    try:
        return Settings.from_env().check()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _prepare_database(settings: Settings) -> None:
    """The embedded SQLite database created and migrated before any process uses it (on a
    fresh folder the consumer's first sweep would otherwise meet missing tables).

    A server database is left alone: migrating it is the release step's job (`intake db
    upgrade`), and a server must start and answer 503 while it is briefly unreachable.
    """
    if not settings.database_url.startswith("sqlite"):
        return
    from intake.cli import open_database

    open_database(settings).dispose()


class ConsumerSupervisor:
    """Keeps one embedded consumer process alive beside the web server."""

    def __init__(self, command: list[str] | None = None, workers: int = 2,
                 name: str = "embedded job consumer") -> None:
        self.name = name
        self.command = command or [
            sys.executable, "-m", "intake.serve", "worker",
            "--workers", str(workers), "--exit-with-parent",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        # Set as soon as the server is told to stop: from then on the consumer exiting (a
        # signal to the whole process group reaches it first) is expected, not restarted.
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="intake-consumer-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        # The child is told who its parent is: read in the child, os.getppid() may already be
        # init if this process died while the child was still importing.
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        self.process = subprocess.Popen(self.command, env=env)
        log.info("%s started (pid %s)", self.name, self.process.pid)

    def _watch(self) -> None:
        delay = 1.0
        while not self._stopping.wait(0.5):
            proc = self.process
            if proc is None or proc.poll() is None:
                continue
            # Exit code 0 is a clean stop, usually the shutdown signal of a deploy reaching the
            # whole process group just before the server's own: not worth an error.
            log.log(
                logging.WARNING if proc.returncode == 0 else logging.ERROR,
                "%s exited with %s; restarting in %.0fs", self.name, proc.returncode, delay,
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            self._spawn()
            delay = min(delay * 2, RESTART_BACKOFF_MAX)

    def shutting_down(self) -> None:
        """The server is stopping: the consumer's exit from now on is not a crash."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGINT lets huey finish the running jobs; SIGKILL after ``STOP_TIMEOUT``."""
        self._stopping.set()
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SupervisorGroup:
    """Several supervised children started, told and stopped as one (issue #14: the IMAP reader
    beside the job consumer); the same methods as ``ConsumerSupervisor``."""

    def __init__(self, members: list[ConsumerSupervisor]) -> None:
        self.members = members

    def start(self) -> None:
        for member in self.members:
            member.start()

    def shutting_down(self) -> None:
        for member in self.members:
            member.shutting_down()

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _imap_mailboxes() -> tuple:
    """The mailboxes of IMAP_URL, checked now so that a mistake stops ``serve`` with a sentence
    instead of a reader restarting for ever."""
    from intake.imap.settings import ImapSettings

    try:
        return ImapSettings.from_env().mailboxes
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def gunicorn_application(options: dict[str, Any], supervisor: ConsumerSupervisor | None):
    """A gunicorn ``BaseApplication`` serving ``create_app()`` built in each worker."""
    from gunicorn.app.base import BaseApplication

    class IntakeApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if supervisor is not None:
                self.cfg.set("when_ready", lambda _server: _start_supervised(supervisor))
                self.cfg.set("on_exit", lambda _server: supervisor.stop())

        def load(self):
            from intake.app import create_app

            return create_app()

    return IntakeApplication()


# The signals on which gunicorn's master stops (graceful, quick, graceful).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def _start_supervised(supervisor: ConsumerSupervisor) -> None:
    """Start the consumer once gunicorn is ready, and tell the supervisor the moment the master
    receives a stop signal (gunicorn only runs ``on_exit`` after its workers are gone, by which
    time the consumer, signalled with the whole process group, has long exited)."""
    for signum in STOP_SIGNALS:
        gunicorn_handler = signal.getsignal(signum)

        def handler(received: int, frame: Any, gunicorn_handler: Any = gunicorn_handler) -> None:
            supervisor.shutting_down()
            if callable(gunicorn_handler):
                gunicorn_handler(received, frame)

        signal.signal(signum, handler)
    supervisor.start()


@click.command("serve")
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1, or 0.0.0.0 when PORT is set).")
@click.option("--port", type=int, default=None, help="Port (default $PORT or 8000).")
@click.option("--workers", type=int, default=None, help="gunicorn web workers (default $WEB_CONCURRENCY or 2).")
@click.option("--queue-workers", type=int, default=2, show_default=True, help="Threads of the embedded job consumer.")
def serve_command(host: str | None, port: int | None, workers: int | None, queue_workers: int) -> None:
    """Serve the web app (webhooks, /slack/events, /healthz); with the embedded queue, run jobs too."""
    _configure_logging()
    settings = _load_settings()
    _prepare_database(settings)
    from intake.app import UNCONFIGURED_WARNED_ENV, warn_unconfigured

    warn_unconfigured(settings)  # here, once, rather than in every web worker
    os.environ[UNCONFIGURED_WARNED_ENV] = "1"
    if host is None:
        host = "0.0.0.0" if os.environ.get("PORT") else "127.0.0.1"
    if port is None:
        port = int(os.environ.get("PORT") or 8000)
    if workers is None:
        workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
    embedded = not settings.redis_url
    supervisor = ConsumerSupervisor(workers=queue_workers) if embedded else None
    # Issue #14: with the embedded queue, the IMAP reader (IMAP_URL) runs beside the consumer,
    # supervised the same way; with Redis it is its own process (Procfile `imap: intake imap`).
    if supervisor is not None and _imap_mailboxes():
        reader = ConsumerSupervisor([sys.executable, "-m", "intake.imap.command", "--exit-with-parent"],
                                    name="IMAP reader")
        supervisor = SupervisorGroup([supervisor, reader])
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        # Longer than SQLite's 30 s busy timeout, so a request waiting on a lock ends in a clean
        # 503 rather than a killed worker; providers time out earlier and retry anyway.
        "timeout": 45,
        "graceful_timeout": 20,
        "accesslog": os.environ.get("INTAKE_ACCESS_LOG") or None,
        # gunicorn's control socket has one default path per user; two servers would collide.
        "control_socket_disable": True,
    }
    log.info(
        "serving on http://%s:%s with %s web workers (%s)",
        host, port, workers, "embedded SQLite queue and worker" if embedded else "Redis queue; run `intake worker`",
    )
    try:
        gunicorn_application(options, supervisor).run()
    except KeyboardInterrupt:  # Ctrl-C before gunicorn took over its signals: a stop, not an error
        if supervisor is not None:
            supervisor.stop()
        log.info("stopped")


@click.command("worker")
@click.option("--workers", type=int, default=2, show_default=True, help="Jobs run at once (threads).")
@click.option("--exit-with-parent", is_flag=True, hidden=True, help="Stop when the parent process goes away.")
def worker_command(workers: int, exit_with_parent: bool) -> None:
    """Run background jobs (the huey consumer) until stopped."""
    _configure_logging()
    settings = _load_settings()
    if not exit_with_parent:  # a consumer started by `intake serve` finds it prepared
        _prepare_database(settings)
    from intake.queue import HueyQueue
    from intake.runtime import Runtime

    from intake.outbox import Poller

    queue = HueyQueue(settings)
    rt = Runtime(settings, queue=queue)
    if exit_with_parent:
        _exit_with_parent()
    log.info("job consumer on %s", "Redis" if settings.redis_url else f"SQLite ({queue.huey.storage.filename})")
    # Deliveries that are due again (a retry after backoff, a lease a killed worker left, a kick
    # that never reached the queue) are found by the poller within seconds.
    poller = Poller(rt).start()
    try:
        queue.run_consumer(workers=workers)
    except KeyboardInterrupt:
        # A second SIGINT during huey's graceful stop (Ctrl-C reaches the whole process group,
        # then `intake serve` stops its consumer with one more): running jobs are interrupted,
        # which is safe (jobs are idempotent, deliveries are leased and retried), not an error.
        log.info("job consumer stopped")
    finally:
        poller.stop()


def _exit_with_parent() -> None:
    """Interrupt this process (huey stops gracefully on SIGINT) once the parent is gone."""
    parent = int(os.environ.get(PARENT_PID_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        log.warning("parent process %s is gone; stopping the embedded consumer", parent)
        # SIGINT lets running jobs finish. A signal that lands while the consumer is still
        # starting can be lost, and a job can hang: escalate rather than linger as an orphan.
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(ORPHAN_GRACE_SECONDS)
        log.warning("embedded consumer still running %ss after its parent left; terminating", ORPHAN_GRACE_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="intake-parent-watch", daemon=True).start()


@click.group()
def main() -> None:
    """Standalone entry point (``python -m intake.serve``); ``intake`` attaches the same commands."""


main.add_command(serve_command)
main.add_command(worker_command)

if __name__ == "__main__":
    main()
