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
from dataclasses import dataclass
from pathlib import Path
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


@dataclass
class Item:
    label: str
    raw: bytes | None
    size: int
    rejected: str | None = None


def _looks_like_mbox(head: bytes) -> bool:
    return head.startswith(b"From ") and b"\n" in head


def _iter_file(path: Path, max_bytes: int) -> Iterator[Item]:
    size = path.stat().st_size
    if size > max_bytes:
        yield Item(str(path), None, size, f"too large: {size} bytes (limit {max_bytes})")
        return
    with path.open("rb") as fh:
        head = fh.read(1024)
    if _looks_like_mbox(head):
        yield from _iter_mbox(path, max_bytes)
        return
    yield Item(str(path), path.read_bytes(), size)


def _iter_mbox(path: Path, max_bytes: int) -> Iterator[Item]:
    import mailbox

    box = mailbox.mbox(str(path), create=False)
    try:
        for index, key in enumerate(box.iterkeys(), start=1):
            raw = box.get_bytes(key)
            label = f"{path}#{index}"
            if len(raw) > max_bytes:
                yield Item(label, None, len(raw), f"too large: {len(raw)} bytes (limit {max_bytes})")
            else:
                yield Item(label, raw, len(raw))
    finally:
        box.close()


def _iter_stdin(max_bytes: int) -> Iterator[Item]:
    data = sys.stdin.buffer.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield Item("-", None, len(data), f"too large: over {max_bytes} bytes")
        return
    if _looks_like_mbox(data[:1024]):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
            tmp.write(data)
            tmp.flush()
            for item in _iter_mbox(Path(tmp.name), max_bytes):
                item.label = "-" + item.label[len(tmp.name):]
                yield item
        return
    yield Item("-", data, len(data))


def _expand(paths: tuple[str, ...]) -> list[Path | str]:
    expanded: list[Path | str] = []
    for raw_path in paths:
        if raw_path == "-":
            expanded.append("-")
            continue
        path = Path(raw_path)
        if path.is_dir():
            expanded.extend(
                sorted(
                    p for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            expanded.append(path)
    return expanded


def ingest_item(rt, item: Item, *, received_from_date: bool = False) -> dict:
    """Store and process one message; the result line `intake ingest --json` prints.

    ``received_from_date``: the message's own Date: is its arrival time (an imported mailbox)."""
    from intake import inquiries, mail
    from intake.pipeline import process_stored

    result = {"file": item.label, "status": None, "inquiry": None, "error": None}
    if item.rejected is None and item.raw is not None:
        # A file handed over by mistake (a Procfile, pyproject.toml) must not become an inquiry:
        # webhooks store whatever was delivered, but here a person picked the files.
        item.rejected = mail.not_mail_reason(item.raw)
    if item.rejected is not None:
        with rt.db.session() as session:
            inquiries.record_receipt(session, "cli", "rejected", size=item.size, detail=f"{item.label}: {item.rejected}")
        result.update(status="rejected", error=item.rejected)
        return result
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, item.raw, provider="cli", provider_event_id=item.label[:255],
                                     meta=dict(inquiries.ARRIVAL_FROM_DATE) if received_from_date else None)
    if stored.duplicate:
        inquiry_id = stored.inquiry_id
        if inquiry_id is None:  # stored earlier but never processed (a crash): process it now
            inquiry_id = process_stored(rt, stored.message_id).inquiry_id
        result.update(status="duplicate", inquiry=inquiry_id)
        return result
    processed = process_stored(rt, stored.message_id)
    result.update(status=processed.status, inquiry=processed.inquiry_id)
    if processed.status == "unparseable":
        with rt.db.session() as session:
            from intake.models import Message

            result["error"] = session.get(Message, stored.message_id).parse_error
    return result


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

    missing = [p for p in paths if p != "-" and not os.path.exists(p)]
    if missing:
        raise click.ClickException(
            "no such file or directory: " + ", ".join(missing) + " (nothing was ingested)"
        )
    rt = build_runtime()
    max_bytes = rt.settings.max_message_bytes
    targets = _expand(paths)

    def items_of(target: Path | str) -> Iterator[Item]:
        if target == "-":
            yield from _iter_stdin(max_bytes)
            return
        try:
            yield from _iter_file(target, max_bytes)
        except OSError as exc:
            yield Item(str(target), None, 0, f"cannot read: {exc.strerror or exc}")

    counts: dict[str, int] = {}
    # A progress bar only where a person watches a long run: on a terminal, past a few dozen
    # files; log lines are then written above the bar instead of through it.
    show_bar = len(targets) >= 50 and sys.stderr.isatty()
    with tqdm(total=len(targets), disable=not show_bar, unit="file", file=sys.stderr) as bar, \
            (logging_redirect_tqdm() if show_bar else contextlib.nullcontext()):
        for target in targets:
            for item in items_of(target):
                try:
                    result = ingest_item(rt, item, received_from_date=received_from_date)
                except OperationalError as exc:
                    raise click.ClickException(
                        f"the database failed while ingesting {item.label}: {exc.orig}"
                    ) from None
                counts[result["status"]] = counts.get(result["status"], 0) + 1
                if as_json:
                    click.echo(json.dumps(result, ensure_ascii=False))
                else:
                    inquiry = f"#{result['inquiry']}" if result["inquiry"] else "-"
                    line = f"{result['status']:<12} {inquiry:<8} {result['file']}"
                    if result["error"]:
                        line += f"  ({result['error']})"
                    click.echo(line)
            bar.update(1)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to ingest"
    click.echo(f"ingested {sum(counts.values())} message(s): {summary}", err=True)
