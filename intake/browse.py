"""`intake list` and `intake show`: inquiries for a person at a terminal, or as JSON.

The JSON shapes are a contract (../shared/DESIGN.md) and come straight from the domain
(``summaries.summary``, ``inquiries.inquiry_detail``). A plain `intake list` reads over the
database's own driver and never imports SQLAlchemy (``intake.dbapi``, ``summaries.read_page``):
its start-up was mostly that import. `--query`, and a database that must be created or migrated
first, take the path through the models. The human views are built here by
pure functions (``list_table``, ``detail_lines``) so they can be tested without a database: a
header row, long senders and subjects cut with a visible "…", a legend for the marks,
timestamps to the second.

Every string that came from an email is passed through ``printable`` first: a subject may carry
terminal escape sequences or bidirectional overrides, and printing them raw would let a sender
recolour or rearrange an operator's terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import click

from intake.states import INQUIRY_STATUSES

if TYPE_CHECKING:  # pragma: no cover
    from intake.config import Settings

DEFAULT_LIMIT = 50
FROM_WIDTH = 30
SUBJECT_WIDTH = 60
ELLIPSIS = "…"
REVIEW_MARK = "*"
REVIEW_LEGEND = (
    f"{REVIEW_MARK} needs review: the classifier was not sure of the category "
    "(below [classifier] review_threshold)"
)
SHOW_BODY_LINES = 20


# --- text for a terminal -----------------------------------------------------------------------


# Bidirectional embeddings, overrides and isolates: they reorder the rest of a terminal line.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str | None) -> str:
    """``text`` safe for a terminal: tabs as spaces, control characters (escape sequences,
    newlines, C1) and bidirectional controls shown as "\ufffd"."""
    if not text:
        return ""
    return "".join(
        " " if ch == "\t"
        else "\ufffd" if ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc"
        else ch
        for ch in text
    )


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "…" when anything was cut."""
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def shorten_address(address: str, width: int) -> str:
    """An address cut to ``width`` without ever cutting into the end of its domain.

    A cut domain misleads ("someone@cityofriver" could be anyone's), so the local part is cut
    first ("pnat…@dailyledger.example.com"); a domain too long even alone keeps its end, which
    is the part that says whose it is ("…@mail.cityofriverton.gov").
    """
    if len(address) <= width:
        return address
    local, at, domain = address.rpartition("@")
    if at and len(domain) + 2 <= width:
        return local[: width - len(domain) - 2] + ELLIPSIS + "@" + domain
    return ELLIPSIS + address[-(width - 1):]


def format_time(value: str | dt.datetime | None) -> str:
    """A timestamp to the second with its UTC offset (``2026-11-03 09:12:00 -0500``), or "-"."""
    if value is None:
        return "-"
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S %z")


# --- intake list -------------------------------------------------------------------------------


def list_table(rows: Sequence[Mapping[str, Any]], more: int = 0) -> list[str]:
    """The lines of `intake list`: a header, one line per inquiry, then what the marks mean and
    how many were left out."""
    if not rows:
        return ["no inquiries"]
    categories = [(row["category"] or "?") + (REVIEW_MARK if row["needs_review"] else "") for row in rows]
    id_width = max(len("ID"), *(len(f"#{row['id']}") for row in rows))
    category_width = max(len("CATEGORY"), *(len(c) for c in categories))
    status_width = max(len("STATUS"), *(len(row["status"]) for row in rows))

    def line(ident: str, status: str, category: str, confidence: str, sender: str, subject: str) -> str:
        return (f"{ident:<{id_width}}  {status:<{status_width}}  {category:<{category_width}}  "
                f"{confidence:>4}  {sender:<{FROM_WIDTH}}  {subject}").rstrip()

    lines = [line("ID", "STATUS", "CATEGORY", "CONF", "FROM", "SUBJECT")]
    for row, category in zip(rows, categories):
        confidence = f"{row['confidence']:.2f}" if row["confidence"] is not None else "-"
        sender = shorten_address(printable(row["from"]) or "(unknown sender)", FROM_WIDTH)
        subject = shorten(printable(row["subject"]) or "(no subject)", SUBJECT_WIDTH)
        lines.append(line(f"#{row['id']}", row["status"], category, confidence, sender, subject))
    if any(row["needs_review"] for row in rows):
        lines.append("")
        lines.append(REVIEW_LEGEND)
    if more:
        lines.append(f"{more} more; use --limit N to show more (--limit 0 shows all)")
    return lines


def _category_names() -> tuple[str, ...]:
    from intake.cli import _settings

    return tuple(_settings().category_names)


def _validate_category(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Checked like --status: an unknown category is an error that lists the valid ones."""
    if value is None:
        return None
    return click.Choice(_category_names()).convert(value, param, ctx)


@click.command("list")
@click.option("--status", type=click.Choice(INQUIRY_STATUSES),
              help="Only inquiries in this state.")
@click.option("--category", callback=_validate_category, metavar="CATEGORY",
              help="Only inquiries of this category (one of the taxonomy's, see INTAKE_CONFIG).")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help=f"Show the newest N (default {DEFAULT_LIMIT}; with --json all); 0 shows all.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON array of objects (id, status, category, subject, from, ...).")
@click.option("--query", "-q", default=None, metavar="QUERY",
              help='The search language, e.g. "category:press status:open,waiting since:7d visa" '
                   "(see the README).")
def list_command(status: str | None, category: str | None, limit: int | None, as_json: bool,
                 query: str | None) -> None:
    """Inquiries, newest first.

    A category marked * needs review: the classifier was not sure.
    """
    from intake.cli import _settings

    if limit is None:
        limit = 0 if as_json else DEFAULT_LIMIT
    settings = _settings()
    page = None if query is not None else _plain_page(settings, status, category, limit)
    rows, more = page if page is not None else _orm_page(settings, status, category, limit, query)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for text in list_table(rows, more):
        click.echo(text)


Page = tuple[list[dict[str, Any]], int]  # the summaries shown, and how many the limit left out


def _plain_page(settings: "Settings", status: str | None, category: str | None, limit: int) -> Page | None:
    """The page read over the database's own driver, without importing SQLAlchemy (most of the
    command's start-up); None when the database needs the full path first (not created or not
    migrated yet, or a URL only SQLAlchemy reads)."""
    from intake import summaries
    from intake.cli import open_plain_database

    conn = open_plain_database(settings)
    if conn is None:
        return None
    with conn:
        rows = summaries.read_page(conn, status=status, category=category, limit=limit or None)
        more = summaries.count(conn, status=status, category=category) - limit if _full(rows, limit) else 0
    return rows, more


def _orm_page(settings: "Settings", status: str | None, category: str | None, limit: int,
              query: str | None) -> Page:
    """The page read through the models: the search language, and any database
    ``open_database`` has to create, migrate or refuse first."""
    from intake import inquiries
    from intake.cli import open_database

    db = open_database(settings)
    try:
        with db.read_session() as session:
            more = 0
            if query is not None:  # the search language (intake/search.py)
                from intake import search

                try:
                    parsed = search.parse(query, categories=settings.category_names)
                except search.QueryError as exc:
                    raise click.ClickException(f"--query {exc}") from None
                found = search.search(session, search.with_filters(parsed, status=status, category=category),
                                      limit=limit or None)
            else:
                found = inquiries.list_inquiries(session, status=status, category=category, limit=limit or None)
            rows = [inquiries.inquiry_summary(i) for i in found]
            if query is None and _full(rows, limit):
                more = inquiries.count_inquiries(session, status=status, category=category) - limit
    finally:
        db.dispose()
    return rows, more


def _full(rows: Sequence[object], limit: int) -> bool:
    """A page cut by its limit: there may be more to count."""
    return bool(limit) and len(rows) == limit


# --- intake show -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outbound:
    """What the human view of an outbound message needs beyond ``inquiry_detail``."""

    body: str
    logged_only: bool


def _indented(text: str | None, limit: int = SHOW_BODY_LINES) -> list[str]:
    lines = printable_lines(text)
    shown = [f"    {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"    {ELLIPSIS} {len(lines) - limit} more lines (intake show --json has the sizes; "
                     "the raw message is stored)")
    return shown


def printable_lines(text: str | None) -> list[str]:
    return [printable(line) for line in (text or "").strip().splitlines()]


def detail_lines(detail: Mapping[str, Any], outbound: Mapping[int, Outbound]) -> list[str]:
    """The lines of `intake show ID` (``outbound``: body and delivery of outbound messages)."""
    inbound = [m for m in detail["messages"] if m["direction"] == "inbound"]
    first = inbound[0] if inbound else None
    confidence = f"{detail['confidence']:.2f}" if detail["confidence"] is not None else "-"
    name = printable(detail["name"])
    lines = [
        f"Inquiry #{detail['id']}: {printable(detail['subject']) or '(no subject)'}",
        f"  from      {name + ' ' if name else ''}<{printable(detail['from']) or '?'}>",
        f"  status    {detail['status']}    assignee {detail['assignee'] or '-'}",
        f"  category  {detail['category'] or '?'} ({confidence})"
        + ("  needs review" if detail["needs_review"] else ""),
        f"  language  {detail['language'] or '-'}",
        f"  reply to  {printable(detail.get('reply_to')) or '-'}  (where a staff reply goes now)",
        f"  received  {format_time(detail['received_at'])}  (when intake got it)",
        f"  dated     {format_time(first['date'] if first else None)}  (the email's Date header)",
    ]
    for c in detail["classifications"]:
        reasons = printable("; ".join(c["reasons"]))
        by = f"{c['source']} {c['actor']}" if c["actor"] else c["source"]
        lines.append(f"  label     {c['category']} {c['confidence']:.2f} by {by}: {reasons}")
    logged = {m_id for m_id, out in outbound.items() if out.logged_only}
    for m in detail["messages"]:
        lines.append("")
        head = f"  [{m['direction']} {m['kind']} #{m['id']}]"
        if m["direction"] == "inbound":
            lines.append(f"{head} from {printable(m['from']) or '?'}")
            lines.append(f"    received {format_time(m['received_at'])}, dated {format_time(m['date'])}; "
                         f"{m['size']} bytes, sha256 {m['sha256'][:12]}, {m['parse_status']}")
            if m["parse_error"]:
                lines.append(f"    parse: {printable(m['parse_error'])}")
            lines.extend(_indented(m["latest_reply"]))
            continue
        out = outbound.get(m["id"])
        if m["id"] in logged:
            state = "logged, not sent (SMTP_URL is unset)"
        else:
            state = m["state"] or "-"
        lines.append(f"{head} to {printable(m['to']) or '?'}: {state}")
        lines.append(f"    {format_time(m['received_at'])}  Subject: {printable(m['subject'])}")
        lines.extend(_indented(out.body if out else None))
    if detail["events"]:
        lines.append("")
        for e in detail["events"]:
            note = ""
            if (e["detail"] or {}).get("message_id") in logged:
                note = " (logged, not sent)"
            lines.append(f"  {format_time(e['at'])}  {printable(e['actor']):<12} {e['kind']}{note}")
    return lines


def _outbound_of(session, message_ids: Iterable[int]) -> dict[int, Outbound]:
    from sqlalchemy import select

    from intake.models import Message
    from intake.outbound.options import was_logged_only

    ids = list(message_ids)
    if not ids:
        return {}
    rows = session.execute(select(Message.id, Message.text_body, Message.meta).where(Message.id.in_(ids)))
    return {row.id: Outbound(row.text_body or "", was_logged_only(row.meta)) for row in rows}


@click.command("show")
@click.argument("inquiry_id", type=int)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: the inquiry, its messages (sha256, size), labels, events.")
def show_command(inquiry_id: int, as_json: bool) -> None:
    """One inquiry with its messages, classification history and events."""
    from intake import inquiries
    from intake.cli import _settings, open_database

    db = open_database(_settings())
    try:
        with db.read_session() as session:
            try:
                detail = inquiries.inquiry_detail(session, inquiry_id)
            except inquiries.InquiryNotFound:
                raise click.ClickException(f"there is no inquiry #{inquiry_id} (see `intake list`)") from None
            outbound = {} if as_json else _outbound_of(
                session, (m["id"] for m in detail["messages"] if m["direction"] == "outbound")
            )
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False, indent=2))
        return
    for text in detail_lines(detail, outbound):
        click.echo(text)
