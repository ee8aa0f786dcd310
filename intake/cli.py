"""The `intake` command (see ../shared/DESIGN.md for the contract).

Errors go to stderr with a non-zero exit and a sentence a person can act on. Subcommands owned
by other layers (serve, worker, classify, train, eval, slack) stay in their modules and are
imported when invoked (``LayeredGroup``).
"""

from __future__ import annotations

import json
import logging
import mailbox
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import click
from sqlalchemy.exc import OperationalError

from intake.config import ConfigError, Settings

log = logging.getLogger("intake")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def build_runtime(settings: Settings | None = None):
    """A runtime for a command: its database, migrated if it is the embedded SQLite default."""
    from intake.migrate import current_revision, ensure_schema, head_revision
    from intake.runtime import Runtime

    from intake.jobs import InlineQueue

    settings = settings or _settings()
    # Jobs run inline; one that fails (Slack or SMTP down) is logged and the command goes on:
    # the message is already stored and processed, and the server's sweeper retries the rest.
    queue = InlineQueue()
    queue.raise_errors = False
    rt = Runtime(settings, queue=queue)
    try:
        if not ensure_schema(settings.database_url, rt.db.engine) and not rt.db.is_sqlite:
            current = current_revision(rt.db.engine)
            if current != head_revision(settings.database_url):
                raise click.ClickException(
                    f"the database at {_safe_url(settings.database_url)} is at schema revision "
                    f"{current or '(none)'}, not the current one: run `intake db upgrade` first"
                )
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot open the database at {_safe_url(settings.database_url)}: {exc.orig}"
        ) from None
    return rt


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
    cost every other command (`intake list`) over a second of start-up.
    """

    LAZY = {
        "serve": ("intake.serve", "serve_command"),
        "worker": ("intake.serve", "worker_command"),
        "classify": ("intake.classify.commands", "classify_command"),
        "train": ("intake.classify.commands", "train_command"),
        "eval": ("intake.classify.commands", "eval_command"),
        "slack": ("intake.slack.socket", "slack_command"),
        "imap": ("intake.imap.command", "imap_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module_name, attr = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module_name), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LayeredGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (to stderr).")
def main(verbose: bool) -> None:
    """intake: every message that reaches the inquiry address, kept, classified and triaged."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# ------------------------------------------------------------------------------------------
# intake db upgrade


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (Alembic upgrade head)."""
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


def ingest_item(rt, item: Item) -> dict:
    """Store and process one message; the result line `intake ingest --json` prints."""
    from intake import inquiries, mail
    from intake.pipeline import process_stored

    result = {"file": item.label, "status": None, "inquiry": None, "error": None}
    if item.rejected is None and item.raw is not None:
        reason = mail.looks_like_message(item.raw)
        # Text without a header block may still be somebody's mail (a digest, a paste): keep it
        # and let it show up as unparseable. Empty files and binary data are not messages.
        if reason and reason != "no header fields":
            item.rejected = reason
    if item.rejected is not None:
        with rt.db.session() as session:
            inquiries.record_receipt(session, "cli", "rejected", size=item.size, detail=f"{item.label}: {item.rejected}")
        result.update(status="rejected", error=item.rejected)
        return result
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, item.raw, provider="cli", provider_event_id=item.label[:255])
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
def ingest(paths: tuple[str, ...], as_json: bool) -> None:
    """Store raw RFC 822 messages from files, directories, mbox files or - (stdin), and process them."""
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

    from tqdm import tqdm

    counts: dict[str, int] = {}
    # A progress bar only where a person watches a long run: on a terminal, past a few dozen files.
    show_bar = len(targets) >= 50 and sys.stderr.isatty()
    with tqdm(total=len(targets), disable=not show_bar, unit="file", file=sys.stderr) as bar:
        for target in targets:
            for item in items_of(target):
                try:
                    result = ingest_item(rt, item)
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


# ------------------------------------------------------------------------------------------
# intake list / show


@main.command("list")
@click.option("--status", type=click.Choice(["new", "open", "waiting", "closed", "spam"]))
@click.option("--category")
@click.option("--limit", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
def list_command(status: str | None, category: str | None, limit: int | None, as_json: bool) -> None:
    """Inquiries, newest first."""
    from intake import inquiries

    rt = build_runtime()
    with rt.db.session() as session:
        rows = [inquiries.inquiry_summary(i) for i in inquiries.list_inquiries(session, status=status, category=category, limit=limit)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("no inquiries")
        return
    for row in rows:
        confidence = f"{row['confidence']:.2f}" if row["confidence"] is not None else "  -  "
        category_label = (row["category"] or "?") + ("*" if row["needs_review"] else "")
        click.echo(
            f"#{row['id']:<6} {row['status']:<8} {category_label:<17} {confidence}  "
            f"{(row['from'] or '(unknown sender)')[:32]:<32}  {(row['subject'] or '')[:70]}"
        )


@main.command()
@click.argument("inquiry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(inquiry_id: int, as_json: bool) -> None:
    """One inquiry with its messages, classification history and events."""
    from intake import inquiries

    rt = build_runtime()
    with rt.db.session() as session:
        try:
            detail = inquiries.inquiry_detail(session, inquiry_id)
        except inquiries.InquiryNotFound:
            raise click.ClickException(f"there is no inquiry #{inquiry_id} (see `intake list`)") from None
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False, indent=2))
        return
    click.echo(f"Inquiry #{detail['id']}: {detail['subject']}")
    click.echo(f"  from      {detail['name'] or ''} <{detail['from'] or '?'}>")
    click.echo(f"  status    {detail['status']}    assignee {detail['assignee'] or '-'}")
    confidence = f"{detail['confidence']:.2f}" if detail["confidence"] is not None else "-"
    click.echo(f"  category  {detail['category'] or '?'} ({confidence}){'  needs review' if detail['needs_review'] else ''}")
    click.echo(f"  language  {detail['language'] or '-'}    received {detail['received_at']}")
    for c in detail["classifications"]:
        reasons = "; ".join(c["reasons"])
        click.echo(f"  label     {c['category']} {c['confidence']:.2f} by {c['source']}{' ' + c['actor'] if c['actor'] else ''}: {reasons}")
    for m in detail["messages"]:
        click.echo("")
        click.echo(f"  [{m['direction']} {m['kind']} #{m['id']}] {m['received_at']} from {m['from'] or '?'}  "
                   f"{m['size']} bytes sha256 {m['sha256'][:12]}  {m['parse_status']}")
        if m["parse_error"]:
            click.echo(f"    parse: {m['parse_error']}")
        for line in (m["latest_reply"] or "").strip().splitlines()[:20]:
            click.echo(f"    {line}")
    if detail["events"]:
        click.echo("")
        for e in detail["events"]:
            click.echo(f"  {e['at']}  {e['actor']:<12} {e['kind']}")
