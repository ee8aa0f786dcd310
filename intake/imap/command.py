"""``intake imap [--once] [--backfill --since DATE]`` (see ../shared/DESIGN.md).

Messages are handed to the job queue exactly as the webhooks hand them (``intake worker``, or
the consumer inside ``intake serve``, processes them); the reader itself only stores.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading

import click

from intake.config import ConfigError

log = logging.getLogger(__name__)


@click.command("imap")
@click.option("--once", is_flag=True, help="One pass over each mailbox, then exit (cron, tests).")
@click.option("--backfill", is_flag=True, help="Import every message since --since (batched, with a progress bar), then exit.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="With --backfill: first day (YYYY-MM-DD).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=None, help="Messages per FETCH (default 50).")
@click.option("--poll", "poll_seconds", type=float, default=None, help="Seconds between passes where the server has no IDLE (default 60).")
@click.option("--exit-with-parent", is_flag=True, hidden=True, help="Stop when the parent process goes away.")
def imap_command(once: bool, backfill: bool, since: dt.datetime | None, batch_size: int | None,
                 poll_seconds: float | None, exit_with_parent: bool) -> None:
    """Read the mailboxes in IMAP_URL: store each message once, then move or flag it."""
    from intake.imap.settings import ImapSettings

    if backfill != (since is not None):
        raise click.UsageError("--backfill and --since go together: intake imap --backfill --since 2024-01-01")
    try:
        imap_settings = ImapSettings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not imap_settings.mailboxes:
        raise click.ClickException(
            "IMAP_URL is not set: give the mailbox to read, e.g. "
            "IMAP_URL=imaps://USER:PASS@imap.example.org:993/INBOX"
        )
    rt = _runtime()
    tokens = None
    if imap_settings.oauth2 is not None:
        from intake.imap.oauth import TokenSource

        tokens = TokenSource(imap_settings.oauth2)
    if once or backfill:
        _one_pass(rt, imap_settings.mailboxes, tokens, since.date() if since else None, batch_size)
        return
    if exit_with_parent:
        from intake.serve import _exit_with_parent

        _exit_with_parent()
    _run_until_stopped(rt, imap_settings.mailboxes, tokens, poll_seconds, batch_size)


def _runtime():
    """The command's database (checked like every command's) with the real job queue."""
    from intake.cli import build_runtime
    from intake.queue import HueyQueue
    from intake.runtime import Runtime

    checked = build_runtime()
    return Runtime(checked.settings, db=checked.db, queue=HueyQueue(checked.settings))


def _one_pass(rt, mailboxes, tokens, since: dt.date | None, batch_size: int | None) -> None:
    from sqlalchemy.exc import SQLAlchemyError
    from imapclient.exceptions import IMAPClientError

    from intake.imap.connection import ImapSetupError, connect
    from intake.imap.oauth import TokenError
    from intake.imap.reader import BATCH_SIZE, ImapReadError, MailboxReader

    failed = []
    for mailbox in mailboxes:
        try:
            connection = connect(mailbox, tokens)
        except (ImapSetupError, TokenError, OSError) as exc:
            click.echo(f"error: {mailbox.name}: cannot connect: {exc}", err=True)
            failed.append(mailbox.name)
            continue
        try:
            with _progress_bar(mailbox.name, enabled=since is not None) as progress:
                reader = MailboxReader(rt, mailbox, connection.client, batch_size=batch_size or BATCH_SIZE)
                report = reader.run_pass(since=since, progress=progress)
            click.echo(report.summary())
        except (IMAPClientError, ImapReadError, OSError, SQLAlchemyError) as exc:
            click.echo(f"error: {mailbox.name}: the pass stopped ({exc.__class__.__name__}: {exc}); "
                       "what was stored is kept, run again to go on", err=True)
            failed.append(mailbox.name)
        finally:
            connection.close()
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(mailboxes)} mailboxes could not be read")


class _progress_bar:
    """A tqdm bar on a terminal (the backfill of a large mailbox); nothing elsewhere."""

    def __init__(self, label: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=label, unit="msg", file=sys.stderr,
                        disable=not (enabled and sys.stderr.isatty()))

    def __enter__(self):
        def progress(done: int, total: int) -> None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

        return progress

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _run_until_stopped(rt, mailboxes, tokens, poll_seconds: float | None, batch_size: int | None) -> None:
    from intake.imap.reader import BATCH_SIZE
    from intake.imap.runner import POLL_SECONDS, run_forever

    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        log.info("signal %s: stopping the IMAP reader after the current step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.warning("reading %d mailbox(es): %s", len(mailboxes), ", ".join(m.name for m in mailboxes))
    run_forever(rt, mailboxes, stop, tokens=tokens, poll_seconds=poll_seconds or POLL_SECONDS,
                batch_size=batch_size or BATCH_SIZE)


if __name__ == "__main__":  # ``intake serve`` starts the reader as ``python -m intake.imap.command``
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    imap_command()
