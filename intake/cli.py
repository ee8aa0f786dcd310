"""The `intake` command (see ../shared/DESIGN.md for the contract).

Errors go to stderr with a non-zero exit and a sentence a person can act on. Subcommands owned
by other layers (serve, worker, classify, train, eval, slack, list, show) stay in their modules
and are imported when invoked (``LayeredGroup``).

Start-up time matters here (`intake --help` and `intake list` should feel instant), so this
module imports only click and the settings at the top; SQLAlchemy, Alembic and the layers are
imported inside the commands that use them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Iterator

import click

from intake import logs
from intake.config import ConfigError, Settings

if TYPE_CHECKING:  # pragma: no cover
    from intake.db import Database
    from intake.dbapi import PlainConnection
    from intake.runtime import Runtime

log = logging.getLogger("intake")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def open_database(settings: Settings) -> "Database":
    """The configured database with a current schema: checked cheaply, the embedded SQLite
    migrated on first use, a server database behind its migrations a clear error."""
    from sqlalchemy.exc import OperationalError

    from intake import migrate
    from intake.db import Database

    db = Database.from_settings(settings)
    try:
        if migrate.schema_is_current(db.engine):
            return db
        if not migrate.ensure_schema(settings.database_url, db.engine) and not db.is_sqlite:
            current = migrate.current_revision(db.engine)
            if current != migrate.head_revision(settings.database_url):
                raise click.ClickException(
                    f"the database at {_safe_url(settings.database_url)} is at schema revision "
                    f"{current or '(none)'}, not the current one: run `intake db upgrade` first"
                )
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot open the database at {_safe_url(settings.database_url)}: {exc.orig}"
        ) from None
    return db


def open_plain_database(settings: Settings) -> "PlainConnection | None":
    """The configured database over its own driver, without SQLAlchemy, when its schema is
    current (`intake list` starts in a fraction of the time); None when ``open_database`` must
    serve instead: it creates and migrates the embedded SQLite, tells a server database that is
    behind to run `intake db upgrade`, and opens URLs the plain path does not read."""
    from intake import dbapi

    try:
        conn = dbapi.connect(settings.database_url)
    except dbapi.Unreachable as exc:  # as open_database says it, without a second wait
        raise click.ClickException(
            f"cannot open the database at {_safe_url(settings.database_url)}: {exc}"
        ) from None
    if conn is None:
        return None
    if dbapi.schema_is_current(conn):
        return conn
    conn.close()
    return None


def build_runtime(settings: Settings | None = None) -> "Runtime":
    """A runtime for a command: its database (see ``open_database``) and an inline queue."""
    from intake.jobs import InlineQueue
    from intake.runtime import Runtime

    settings = settings or _settings()
    # Jobs run inline; one that fails (Slack or SMTP down) is logged and the command goes on:
    # the message is already stored and processed, and the server's sweeper retries the rest.
    queue = InlineQueue()
    queue.raise_errors = False
    return Runtime(settings, open_database(settings), queue=queue)


def _safe_url(url: str) -> str:
    """The database URL without its password, for error messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable DATABASE_URL)"


class LayeredGroup(click.Group):
    """Commands that live beside the layer they drive, imported only when invoked.

    `intake classify` needs scikit-learn and `intake serve` gunicorn: importing them up front
    cost every other command (`intake list`) over a second of start-up. `intake --help` lists
    them from ``SHORT_HELP`` without importing any (click would load each command to read its
    docstring); a command without an entry there is loaded to be listed, which is correct but
    slow, so give every lazy command one.
    """

    LAZY = {
        "serve": ("intake.serve", "serve_command"),
        "worker": ("intake.serve", "worker_command"),
        "classify": ("intake.classify.commands", "classify_command"),
        "train": ("intake.classify.commands", "train_command"),
        "eval": ("intake.classify.commands", "eval_command"),
        "slack": ("intake.slack.socket", "slack_command"),
        "list": ("intake.browse", "list_command"),
        "show": ("intake.browse", "show_command"),
        "groups": ("intake.grouping.commands", "groups_command"),
        "due": ("intake.sla.commands", "due_command"),
        "report": ("intake.sla.commands", "report_command"),
        "forget": ("intake.privacy.commands", "forget_command"),
        "export": ("intake.privacy.commands", "export_command"),
        "delete": ("intake.privacy.commands", "delete_command"),
        "purge": ("intake.privacy.commands", "purge_command"),
        "imap": ("intake.imap.command", "imap_command"),
    }
    # The one-line help `intake --help` shows for each lazy command; the command gets the same
    # text as its short help once loaded.
    SHORT_HELP = {
        "serve": "Serve the web app (webhooks, /slack/events, /healthz) and, embedded, the jobs.",
        "worker": "Run background jobs (the job consumer) until stopped.",
        "classify": "Classify messages without storing them.",
        "train": "Retrain the classifier from the seed set plus staff corrections.",
        "eval": "Score the classifier on labelled message files (a CSV).",
        "slack": "Slack commands (Socket Mode for local use).",
        "list": "Inquiries, newest first.",
        "show": "One inquiry with its messages, classification history and events.",
        "groups": "Open inquiries that ask the same question.",
        "due": "Open inquiries against their response targets.",
        "report": "Volume and response figures for a period.",
        "forget": "Erase everything held about a person.",
        "export": "Everything held about a person, as one JSON document.",
        "delete": "Remove one inquiry loaded by mistake.",
        "purge": "Apply the retention policy (old spam deleted, old closed redacted).",
        "imap": "Read the mailboxes in IMAP_URL: store each message once, then move or flag it.",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module_name, attr = self.LAZY[name]
            command = getattr(importlib.import_module(module_name), attr)
            if name in self.SHORT_HELP:
                command.short_help = self.SHORT_HELP[name]
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.SHORT_HELP and name not in self.commands:
                rows.append((name, self.SHORT_HELP[name]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LayeredGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True,
              help="Log every library's INFO lines too, not only intake's own (to stderr).")
def main(verbose: bool) -> None:
    """intake: every message that reaches the inquiry address, kept, classified and triaged.

    Log lines go to stderr: intake's own at INFO, other libraries' warnings. INTAKE_LOG_LEVEL
    (DEBUG, INFO, WARNING, ERROR) sets the level for all of them.
    """
    try:
        logs.configure(intake_level="INFO", verbose=verbose)
    except logs.LogLevelError as exc:
        raise click.ClickException(str(exc)) from None


# ------------------------------------------------------------------------------------------
# intake db upgrade


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="The revision to migrate to (head: the newest).")
def db_upgrade(revision: str) -> None:
    """Apply migrations (Alembic upgrade head)."""
    from sqlalchemy.exc import OperationalError

    from intake.migrate import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, revision)
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot reach the database at {_safe_url(settings.database_url)}: {exc.orig}"
        ) from None
    click.echo(f"database at {_safe_url(settings.database_url)} is at revision {revision}")


# ------------------------------------------------------------------------------------------
# intake ingest


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message on stdout.")
@click.option("--received-from-date", is_flag=True,
              help="Each message's Date: is its arrival time (importing an old mailbox).")
def ingest(paths: tuple[str, ...], as_json: bool, received_from_date: bool) -> None:
    """Store raw RFC 822 messages from files, directories, mbox files or - (stdin), and process them.

    A file is taken as mail when its header has a From, a Message-ID, a MIME-Version, or a Date
    and a Subject; anything else is rejected with the reason (no message, no inquiry). The
    first run fits the classifier's seed model (some seconds; cached afterwards).
    """
    from sqlalchemy.exc import OperationalError
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from intake import ingest as importing

    missing = [p for p in paths if p != "-" and not os.path.exists(p)]
    if missing:
        raise click.ClickException(
            "no such file or directory: " + ", ".join(missing) + " (nothing was ingested)"
        )
    rt = build_runtime()
    max_bytes = rt.settings.max_message_bytes
    targets = importing.expand(paths)
    # (item, whether it is the last of its target): the progress bar counts files.
    items = ((item, last) for target in targets for item, last in _with_last(importing.items_of(target, max_bytes)))

    counts: dict[str, int] = {}
    not_processed: list[tuple[str, str]] = []

    def show(result: dict) -> None:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            inquiry = f"#{result['inquiry']}" if result["inquiry"] else "-"
            line = f"{result['status']:<12} {inquiry:<8} {result['file']}"
            if result["error"]:
                line += f"  ({result['error']})"
            click.echo(line)

    # A progress bar only where a person watches a long run: on a terminal, past a few dozen
    # files; log lines are then written above the bar instead of through it.
    show_bar = len(targets) >= 50 and sys.stderr.isatty()
    with tqdm(total=len(targets), disable=not show_bar, unit="file", file=sys.stderr) as bar, \
            (logging_redirect_tqdm() if show_bar else contextlib.nullcontext()), \
            importing.HeldDeliveries(rt) as deliveries:
        for chunk in importing.chunks(items):
            try:
                try:
                    results = importing.ingest_chunk(rt, [item for item, _ in chunk],
                                                     received_from_date=received_from_date)
                except importing.NotProcessed as exc:
                    results = exc.results
                    not_processed.extend(exc.failed)
                deliveries.processed(len(chunk))
            except OperationalError as exc:
                raise click.ClickException(
                    f"the database failed while ingesting {chunk[0][0].label}"
                    f"{f' (and {len(chunk) - 1} more)' if len(chunk) > 1 else ''}: {exc.orig}"
                ) from None
            for result in results:
                show(result)
            bar.update(sum(1 for _, last in chunk if last))
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to ingest"
    click.echo(f"ingested {sum(counts.values())} message(s): {summary}", err=True)
    if not_processed:
        raise click.ClickException(
            f"{len(not_processed)} message(s) were stored but could not be processed: "
            + "; ".join(f"{label} ({error})" for label, error in not_processed[:10])
            + ("; ..." if len(not_processed) > 10 else "")
            + ". They are kept: `intake ingest` them again, or a worker's sweeper processes them."
        )


def _with_last(iterator: Iterator) -> Iterator[tuple[object, bool]]:
    """Each element with whether it is the last one."""
    previous, started = None, False
    for element in iterator:
        if started:
            yield previous, False
        previous, started = element, True
    if started:
        yield previous, True
