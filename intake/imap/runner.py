"""``intake imap`` running for good: one thread per mailbox, IDLE or polling, reconnecting.

Each mailbox gets its own thread and connection because IDLE holds a connection for one folder.
A thread runs a pass, then waits for news (IDLE where the server has it, otherwise a poll
interval), and runs the next pass. Anything that breaks the connection (the server restarts,
drops the socket mid-fetch, the database is briefly down) ends that connection; the thread
reconnects after a backoff that doubles up to ``BACKOFF_MAX`` and resets after a good pass.
Nothing is lost in between: the ledger says what was stored, and the next pass resumes there.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Callable

from intake.imap.connection import Connection, connect
from intake.imap.oauth import TokenSource
from intake.imap.reader import BATCH_SIZE, MailboxReader, hand_to_processing
from intake.imap.settings import Mailbox

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

POLL_SECONDS = 60.0
# IDLE is re-issued this often (RFC 2177 asks for less than 29 minutes; NAT boxes forget idle
# TCP sessions after a few minutes), and each re-issue runs a pass as a safety net.
IDLE_SECONDS = 240.0
# How often an IDLE wait looks at the stop flag.
IDLE_TICK = 1.0
BACKOFF_START = 1.0
# Log in again with a fresh access token when the one in use has less than this left
# (Microsoft ends a session whose token lapsed; Google may too).
RELOGIN_MARGIN = 60.0
BACKOFF_MAX = 300.0


class MailboxRunner:
    """Keeps one mailbox read until ``stop`` is set."""

    def __init__(self, rt: "Runtime", mailbox: Mailbox, stop: threading.Event, *,
                 tokens: TokenSource | None = None, poll_seconds: float = POLL_SECONDS,
                 idle_seconds: float = IDLE_SECONDS, backoff_max: float = BACKOFF_MAX,
                 batch_size: int = BATCH_SIZE, relogin_margin: float = RELOGIN_MARGIN,
                 connector: Callable[[Mailbox], Connection] | None = None,
                 handoff: Callable[["Runtime", int], None] = hand_to_processing) -> None:
        self.rt = rt
        self.mailbox = mailbox
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.relogin_margin = relogin_margin
        self.handoff = handoff
        self.connector = connector or (lambda m: connect(m, tokens))
        self.passes = 0
        self.connections = 0
        self.failures = 0

    def run(self) -> None:
        delay = BACKOFF_START
        while not self.stop.is_set():
            passes_before = self.passes
            try:
                connection = self.connector(self.mailbox)
            except Exception as exc:  # noqa: BLE001 - any failure: wait and try again
                delay = self._back_off(exc, delay, "connect")
                continue
            self.connections += 1
            try:
                self._serve(connection)
                delay = BACKOFF_START
            except Exception as exc:  # noqa: BLE001 - the connection is done for; reconnect
                if self.passes > passes_before:  # it worked for a while: a fresh failure
                    delay = BACKOFF_START
                delay = self._back_off(exc, delay, "read")
            finally:
                connection.close()

    def _serve(self, connection: Connection) -> None:
        reader = MailboxReader(self.rt, self.mailbox, connection.client, batch_size=self.batch_size,
                               handoff=self.handoff)
        while not self.stop.is_set():
            report = reader.run_pass()
            self.passes += 1
            if connection.seconds_left() < self.relogin_margin:
                log.info("%s: access token close to expiry; logging in again", self.mailbox.name)
                return
            if report.seen:
                # Wait only after a pass that found nothing: a message that arrived during a
                # busy pass was announced (EXISTS) in answer to its STORE or MOVE, and IDLE
                # would not announce it again. After an empty pass (SELECT, SEARCH), anything
                # newer is announced when IDLE starts.
                continue
            # Wake up in time to log in again before the token lapses.
            token_window = connection.seconds_left() - self.relogin_margin
            if connection.can_idle:
                self._idle(connection, min(self.idle_seconds, token_window))
            else:
                self.stop.wait(min(self.poll_seconds, token_window))

    def _idle(self, connection: Connection, seconds: float) -> None:
        """Wait until the server announces a new message, ``seconds`` pass, or stop."""
        client = connection.client
        client.idle()
        try:
            deadline = time.monotonic() + seconds
            while not self.stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=IDLE_TICK)
                if any(len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    return
        finally:
            client.idle_done()

    def _back_off(self, exc: Exception, delay: float, stage: str) -> float:
        self.failures += 1
        wait = delay * (1 + random.random() / 4)  # jitter: several readers do not reconnect in step
        log.warning("%s: %s failed (%s: %s); reconnecting in %.1fs",
                    self.mailbox.name, stage, exc.__class__.__name__, exc, wait)
        self.stop.wait(wait)
        return min(delay * 2, self.backoff_max)


def run_forever(rt: "Runtime", mailboxes: tuple[Mailbox, ...], stop: threading.Event, *,
                tokens: TokenSource | None = None, **options) -> list[MailboxRunner]:
    """A thread per mailbox until ``stop`` is set; returns the runners once all have ended."""
    runners = [MailboxRunner(rt, mailbox, stop, tokens=tokens, **options) for mailbox in mailboxes]
    threads = [threading.Thread(target=r.run, name=f"imap {r.mailbox.name}", daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    return runners
