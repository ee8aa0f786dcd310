"""Erasure that is real: rows deleted, not flagged; text replaced where it belongs to others.

One engine serves ``intake forget`` (a person), ``intake delete`` (an inquiry loaded by mistake)
and retention (old spam deleted, old closed inquiries redacted):

- ``delete_rows`` deletes rows and, following the foreign keys of ``intake.models``, every row
  that depends on them. It reads the keys from the metadata, so a table another feature adds
  later (with a foreign key to inquiries or messages) is erased with them without a change
  here. The one table that keeps a trace is ``receipts``: a receipt loses its link to the
  message and keeps the size, the SHA-256 and the outcome (``unlink_receipts``), so the ledger
  still proves nothing was lost without keeping what was erased.
- ``sweep`` replaces an address (and distinctive display names) wherever else it still
  appears: every text and JSON column of every table, and the email bytes of ``messages.raw``
  and ``attachments.content``.
- ``redact_inquiries`` keeps an inquiry's shape (category, status, dates, counts) and removes
  its text, attachments and addresses.

Every function takes the caller's Session (one transaction). What Slack must show afterwards is
planned (``SlackCleanup``) before the rows go and owed through the outbox in the same
transaction (``owe_slack``): the erasure and its Slack cleanup commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Column, String, Table, Text, UniqueConstraint, delete, func, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON

from intake.grouping.store import dissolve, label_for, owe_group_card
from intake.keys import keyed_hash
from intake.outbox import owe, owe_card
from intake.models import (
    Attachment,
    Base,
    Classification,
    Contact,
    Delivery,
    Event,
    GroupMember,
    Inquiry,
    InquiryGroup,
    Message,
    ModelVersion,
    Receipt,
    utcnow,
)

PLACEHOLDER = "[erased]"
CHUNK = 500
# Columns holding email bytes, where an address can be replaced in place. Other binary columns
# (a pickled model, a secret) would be corrupted by a byte replacement and are never swept.
EMAIL_BYTES = (Message.__table__.c.raw, Attachment.__table__.c.content)
# Tables the sweep leaves alone: a namesake's contact record is theirs, and the secret is a key.
SWEEP_SKIPS = frozenset({"secrets"})
NAME_SWEEP_SKIPS = frozenset({"contacts"})
# Event detail keys that carry no text from an email (ids, labels, Slack user IDs, counts); a
# redacted inquiry's events keep these and lose every other key.
PLAIN_DETAIL_KEYS = frozenset({
    "message_id", "category", "previous", "assignee", "attempts", "cap", "kind", "answer",
    "after_id", "through_id", "counts",
})
ADDRESS_PURPOSE = "privacy.address"
RECEIPT_PURPOSE = "privacy.receipt"


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[list[int]]:
    ids = sorted(set(ids))
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# --------------------------------------------------------------------------------------------
# What Slack must show afterwards


@dataclass
class SlackCleanup:
    """One card's worth of Slack work after an erasure, computed before the rows are gone.

    ``card``: ``erased`` or ``redacted`` (replace the card with a placeholder), ``deleted``
    (remove it), ``refresh`` (the card stays: other inquiries share it, or only some of its lines
    go; the card itself is re-rendered by its own ``slack.card`` delivery).
    Thread lines to delete: the recorded ``lines`` (ts), and any line whose Slack metadata names
    one of ``inquiry_ids`` (going whole) or one of ``line_keys`` (single messages and events that
    go), which also finds a line whose ts was never recorded. ``rewrite_messages`` /
    ``rewrite_events``: lines whose rows stay with an address replaced, re-rendered in place.
    """

    channel: str
    card_ts: str
    card: str
    inquiry_ids: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    line_keys: list[str] = field(default_factory=list)
    refresh_inquiry_id: int | None = None
    rewrite_messages: list[int] = field(default_factory=list)
    rewrite_events: list[int] = field(default_factory=list)
    at: str | None = None
    category: str | None = None

    def as_args(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """One card's cleanup is owed once per erasure: ``<erasure>:<this>``."""
        return f"{self.channel}:{self.card_ts}:{self.card}"

    @property
    def needs_slack(self) -> bool:
        """False for a card that only needs re-rendering (its ``slack.card`` delivery does it)."""
        return self.card != "refresh" or bool(self.lines or self.line_keys or self.inquiry_ids
                                               or self.rewrite_messages or self.rewrite_events)


# A line delivery already under way when an erasure commits may still post (it read the text a
# moment before): the cleanup runs once more this much later and deletes what it finds then.
CLEANUP_AGAIN_AFTER = dt.timedelta(minutes=10)
CLEANUP_KIND = "slack.erasure_cleanup"


def owe_slack(session: Session, plans: Sequence[SlackCleanup], erasure_key: str) -> None:
    """Owe, in the erasure's transaction, what Slack must show (intake.slack.erasure delivers).

    Not tied to an inquiry (``inquiry_id`` None): the inquiries may be gone by the time it runs.
    """
    again = utcnow() + CLEANUP_AGAIN_AFTER
    for plan in merge_plans(plans):
        if plan.refresh_inquiry_id is not None:
            owe_card(session, plan.refresh_inquiry_id)
        if not plan.needs_slack:
            continue
        key = f"{erasure_key}:{plan.key()}"
        owe(session, CLEANUP_KIND, key=key, args=plan.as_args())
        owe(session, CLEANUP_KIND, key=f"{key}:again", args=plan.as_args(), not_before=again)


def _lines_of(session: Session, inquiry_ids: Sequence[int]) -> dict[int, list[str]]:
    """The thread lines (ts) posted for these inquiries' messages and events."""
    found: dict[int, list[str]] = {}
    for chunk in chunks(inquiry_ids):
        for inquiry_id, ts in session.execute(
            select(Message.inquiry_id, Message.slack_ts).where(Message.inquiry_id.in_(chunk), Message.slack_ts.is_not(None))
        ):
            found.setdefault(inquiry_id, []).append(ts)
        events = select(Event.inquiry_id, Event.slack_ts).where(Event.inquiry_id.in_(chunk), Event.slack_ts.is_not(None))
        for inquiry_id, ts in session.execute(events):
            found.setdefault(inquiry_id, []).append(ts)
    return found


def plan_cards(session: Session, inquiry_ids: Sequence[int], card: str, *,
               at: dt.datetime | None = None) -> list[SlackCleanup]:
    """Slack plans for inquiries about to be erased, deleted or redacted.

    Their thread lines all go (a redacted card keeps no line either: follow-ups and notes quote
    text, and "claimed it" alone under a placeholder says nothing). Inquiries folded into one
    card share it: when every inquiry on a card goes, the card gets ``card``; when some stay, it
    is re-rendered from the first that stays and only the lines of the ones that go are deleted.
    """
    going = set(inquiry_ids)
    cards: dict[tuple[str, str], list[int]] = {}
    categories: dict[int, str | None] = {}
    for chunk in chunks(inquiry_ids):
        for row in session.execute(
            select(Inquiry.id, Inquiry.slack_channel, Inquiry.slack_ts, Inquiry.category)
            .where(Inquiry.id.in_(chunk), Inquiry.slack_ts.is_not(None), Inquiry.slack_channel.is_not(None))
        ):
            cards.setdefault((row.slack_channel, row.slack_ts), []).append(row.id)
            categories[row.id] = row.category
    if not cards:
        return []
    lines = _lines_of(session, [i for ids in cards.values() for i in ids])
    plans = []
    for (channel, ts), ids in sorted(cards.items()):
        sharing = set(session.scalars(select(Inquiry.id).where(Inquiry.slack_channel == channel, Inquiry.slack_ts == ts)))
        staying = sorted(sharing - going)
        plan = SlackCleanup(
            channel=channel, card_ts=ts, card="refresh" if staying else card, inquiry_ids=sorted(ids),
            lines=sorted({t for i in ids for t in lines.get(i, []) if t != ts}),
            refresh_inquiry_id=staying[0] if staying else None,
            at=(at or utcnow()).isoformat(), category=categories[min(ids)] if len(ids) == 1 else None,
        )
        plans.append(plan)
    return plans


def plan_rewrites(session: Session, changed: dict[str, set[int]], removed: "RemovedLines") -> list[SlackCleanup]:
    """Slack plans for surviving inquiries whose rows the sweep changed or lost a message.

    Their cards are re-rendered; lines of rows that changed are re-rendered, lines of rows that
    went are deleted.
    """
    touched: dict[int, SlackCleanup] = {}

    def plan_for(inquiry_id: int | None) -> SlackCleanup | None:
        if inquiry_id is None:
            return None
        if inquiry_id not in touched:
            row = session.execute(
                select(Inquiry.slack_channel, Inquiry.slack_ts).where(Inquiry.id == inquiry_id)
            ).first()
            if row is None or not row.slack_ts or not row.slack_channel:
                return None
            touched[inquiry_id] = SlackCleanup(row.slack_channel, row.slack_ts, "refresh",
                                               refresh_inquiry_id=inquiry_id, at=utcnow().isoformat())
        return touched[inquiry_id]

    for inquiry_id, lines in removed.ts.items():
        plan = plan_for(inquiry_id)
        if plan is not None:
            plan.lines.extend(lines)
    for inquiry_id, keys in removed.keys.items():
        plan = plan_for(inquiry_id)
        if plan is not None:
            plan.line_keys.extend(keys)
    for chunk in chunks(changed.get("messages", ())):
        for row in session.execute(select(Message.id, Message.inquiry_id, Message.slack_ts).where(Message.id.in_(chunk))):
            plan = plan_for(row.inquiry_id)
            if plan is not None and row.slack_ts:
                plan.rewrite_messages.append(row.id)
    for chunk in chunks(changed.get("events", ())):
        for row in session.execute(select(Event.id, Event.inquiry_id, Event.slack_ts).where(Event.id.in_(chunk))):
            plan = plan_for(row.inquiry_id)
            if plan is not None and row.slack_ts:
                plan.rewrite_events.append(row.id)
    for inquiry_id in changed.get("inquiries", ()):
        plan_for(inquiry_id)
    for chunk in chunks(changed.get("classifications", ())):
        for inquiry_id in session.scalars(select(Classification.inquiry_id).where(Classification.id.in_(chunk))):
            plan_for(inquiry_id)
    return list(touched.values())


def merge_plans(plans: Iterable[SlackCleanup]) -> list[SlackCleanup]:
    """One plan per card and outcome (several inquiries can share a card: a folded burst)."""
    merged: dict[str, SlackCleanup] = {}
    for plan in plans:
        if plan.key() not in merged:
            merged[plan.key()] = plan
            continue
        into = merged[plan.key()]
        for name in ("inquiry_ids", "lines", "line_keys", "rewrite_messages", "rewrite_events"):
            getattr(into, name).extend(x for x in getattr(plan, name) if x not in getattr(into, name))
    return list(merged.values())


# --------------------------------------------------------------------------------------------
# Deleting, following the foreign keys


def _referencing(table: Table) -> list[tuple[Table, Column]]:
    """(table, column) pairs whose foreign key points at ``table``."""
    return [
        (child, fk.parent)
        for child in Base.metadata.sorted_tables
        for fk in child.foreign_keys
        if fk.column.table is table
    ]


def unlink_receipts(session: Session, message_ids: Sequence[int], key: bytes, at: dt.datetime) -> int:
    """Receipts of erased messages keep size, hash and outcome; the link and any text go.

    The provider's delivery id is replaced by its keyed hash: a provider's log can still be
    matched against the ledger, but the id (a file path for `intake ingest`) is not kept.
    """
    receipts = Receipt.__table__
    count = 0
    for chunk in chunks(message_ids):
        hashes = dict(session.execute(select(Message.id, Message.sha256).where(Message.id.in_(chunk))).all())
        rows = session.execute(
            select(receipts.c.id, receipts.c.message_id, receipts.c.provider_event_id).where(receipts.c.message_id.in_(chunk))
        ).all()
        for row in rows:
            event_id = row.provider_event_id
            session.execute(
                update(receipts).where(receipts.c.id == row.id).values(
                    message_id=None, sha256=hashes.get(row.message_id), erased_at=at, detail=None,
                    provider_event_id=("hmac:" + keyed_hash(key, RECEIPT_PURPOSE, event_id)[:40]) if event_id else None,
                )
            )
        count += len(rows)
    return count


@dataclass
class Tally:
    """Rows removed per table, and the bytes of raw mail among them."""

    rows: Counter = field(default_factory=Counter)
    raw_bytes: int = 0
    receipts_kept: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {name: n for name, n in sorted(self.rows.items()) if n}
        out["raw_bytes"] = self.raw_bytes
        if self.receipts_kept:
            out["receipts_kept"] = self.receipts_kept
        return out


def delete_rows(session: Session, table: Table, ids: Sequence[int], tally: Tally, key: bytes, at: dt.datetime) -> None:
    """Delete rows of ``table`` and, first, every row that depends on them (foreign keys)."""
    ids = sorted(set(ids))
    if not ids:
        return
    if table is Message.__table__:
        for chunk in chunks(ids):
            tally.raw_bytes += session.scalar(select(func.coalesce(func.sum(Message.size), 0)).where(Message.id.in_(chunk))) or 0
    for child, column in _referencing(table):
        if child is Receipt.__table__:
            tally.receipts_kept += unlink_receipts(session, ids, key, at)
            continue
        child_pk = child.primary_key.columns.values()[0]
        for chunk in chunks(ids):
            child_ids = list(session.scalars(select(child_pk).where(column.in_(chunk))))
            delete_rows(session, child, child_ids, tally, key, at)
    pk = table.primary_key.columns.values()[0]
    for chunk in chunks(ids):
        session.execute(delete(table).where(pk.in_(chunk)))
    tally.rows[table.name] += len(ids)


@dataclass
class RemovedLines:
    """Thread lines of single messages and events that went, by inquiry: the recorded ts, and
    the keys their lines carry in Slack metadata (``line:message:<id>``, ``line:event:<id>``)."""

    ts: dict[int, list[str]] = field(default_factory=dict)
    keys: dict[int, list[str]] = field(default_factory=dict)

    def add(self, inquiry_id: int, key: str, ts: str | None) -> None:
        self.keys.setdefault(inquiry_id, []).append(key)
        if ts:
            self.ts.setdefault(inquiry_id, []).append(ts)


def erase_inquiries(session: Session, inquiry_ids: Sequence[int], tally: Tally, key: bytes, at: dt.datetime) -> None:
    """Delete whole inquiries (``delete_rows``), then mend the groups they were in."""
    groups = set()
    for chunk in chunks(inquiry_ids):
        groups.update(session.scalars(select(GroupMember.group_id).where(GroupMember.inquiry_id.in_(chunk))))
    delete_rows(session, Inquiry.__table__, inquiry_ids, tally, key, at)
    mend_groups(session, sorted(groups))


def mend_groups(session: Session, group_ids: Sequence[int]) -> None:
    """Groups that lost a member to an erasure (``intake.grouping``): a group's label is a
    member's question in their own words, and its card lists the members, so each is re-labelled
    from a member that stays (or dissolved below two) and its card is owed again."""
    for group in session.scalars(select(InquiryGroup).where(InquiryGroup.id.in_(list(group_ids) or [0]))):
        staying = list(session.scalars(select(GroupMember.inquiry_id).where(
            GroupMember.group_id == group.id, GroupMember.split_at.is_(None)).order_by(GroupMember.inquiry_id)))
        if group.dissolved_at is None and len(staying) < 2:
            dissolve(session, group)
        if staying:
            first = session.scalar(select(Message).where(Message.inquiry_id == staying[0], Message.direction == "inbound")
                                   .order_by(Message.id).limit(1))
            subject = session.scalar(select(Inquiry.subject).where(Inquiry.id == staying[0])) or ""
            group.label = label_for(subject, (first.latest_reply or first.text_body or "") if first else "")
        else:
            group.label = ""
        group.size = len(staying) if group.dissolved_at is None else 0
        owe_group_card(session, group.id)


def delete_messages(session: Session, message_ids: Sequence[int], tally: Tally, key: bytes, at: dt.datetime) -> RemovedLines:
    """Delete single messages from conversations that stay, with the events about them and the
    outbox rows that would deliver either (a line, an email)."""
    removed = RemovedLines()
    if not message_ids:
        return removed
    gone = set(message_ids)
    inquiry_ids = set()
    for chunk in chunks(message_ids):
        for row in session.execute(select(Message.id, Message.inquiry_id, Message.slack_ts).where(Message.id.in_(chunk))):
            if row.inquiry_id is not None:
                inquiry_ids.add(row.inquiry_id)
                removed.add(row.inquiry_id, f"line:message:{row.id}", row.slack_ts)
    # Events point at messages inside their JSON detail ("follow_up", "reply_sent", ...).
    about: set[int] = set()
    for chunk in chunks(sorted(inquiry_ids)):
        for event in session.execute(select(Event.id, Event.inquiry_id, Event.detail, Event.slack_ts).where(Event.inquiry_id.in_(chunk))):
            if _int((event.detail or {}).get("message_id")) in gone:
                about.add(event.id)
                removed.add(event.inquiry_id, f"line:event:{event.id}", event.slack_ts)
    owed: list[int] = []
    for chunk in chunks(sorted(inquiry_ids)):
        for delivery in session.execute(select(Delivery.id, Delivery.args).where(Delivery.inquiry_id.in_(chunk))):
            args = delivery.args or {}
            if _int(args.get("message_id")) in gone or _int(args.get("event_id")) in about:
                owed.append(delivery.id)
    delete_rows(session, Delivery.__table__, owed, tally, key, at)
    delete_rows(session, Event.__table__, sorted(about), tally, key, at)
    delete_rows(session, Message.__table__, message_ids, tally, key, at)
    return removed


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def delete_orphan_contacts(session: Session, contact_ids: Iterable[int], tally: Tally, key: bytes, at: dt.datetime) -> None:
    """Contacts among these that no inquiry refers to any more."""
    ids = [i for i in set(contact_ids) if i is not None]
    orphans = []
    for chunk in chunks(ids):
        used = set(session.scalars(select(Inquiry.contact_id).where(Inquiry.contact_id.in_(chunk))))
        orphans.extend(i for i in chunk if i not in used)
    delete_rows(session, Contact.__table__, orphans, tally, key, at)


def contacts_of(session: Session, inquiry_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunks(inquiry_ids):
        found.update(i for i in session.scalars(select(Inquiry.contact_id).where(Inquiry.id.in_(chunk))) if i is not None)
    return found


# --------------------------------------------------------------------------------------------
# The sweep: an address replaced wherever it is left


@dataclass(frozen=True)
class Needles:
    """What to look for: an address (exactly, never inside a longer address) and display names."""

    address: str
    names: tuple[str, ...] = ()

    def patterns(self, *, with_names: bool = True) -> list[re.Pattern[str]]:
        found = [re.compile(
            r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])" + re.escape(self.address) + r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])",
            re.IGNORECASE,
        )]
        if with_names:
            found += [re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, n.split())) + r"(?!\w)", re.IGNORECASE)
                      for n in self.names]
        return found

    def byte_patterns(self) -> list[re.Pattern[bytes]]:
        return [re.compile(p.pattern.encode("utf-8"), re.IGNORECASE) for p in self.patterns()]

    def like_terms(self, *, with_names: bool = True) -> list[str]:
        """Lower-cased substrings for a SQL pre-filter (JSON stores non-ASCII as \\u escapes)."""
        terms = {self.address.lower()}
        if with_names:
            terms.update(n.lower() for n in self.names)
        terms.update([json.dumps(t)[1:-1] for t in terms])
        return sorted(terms)


def _replace(value: Any, patterns: list[re.Pattern[str]]) -> Any:
    if isinstance(value, str):
        for pattern in patterns:
            value = pattern.sub(PLACEHOLDER, value)
        return value
    if isinstance(value, list):
        return [_replace(v, patterns) for v in value]
    if isinstance(value, dict):
        return {_replace(k, patterns): _replace(v, patterns) for k, v in value.items()}
    return value


def _is_unique(table: Table, column: Column) -> bool:
    if column.unique or column.primary_key:
        return True
    return any(
        isinstance(c, UniqueConstraint) and column.name in c.columns.keys() for c in table.constraints
    ) or any(i.unique and column.name in i.columns.keys() for i in table.indexes)


def _text_columns(table: Table) -> list[Column]:
    return [c for c in table.columns if isinstance(c.type, (String, Text, JSON)) and not c.primary_key]


def scan_bytes(session: Session, column: Column, patterns: list[re.Pattern[bytes]], *,
               after_id: int = 0, only: Iterable[int] | None = None, batch: int = 200) -> list[int]:
    """Ids of rows whose bytes match, read a page at a time (a desk's mail does not fit in RAM)."""
    table = column.table
    pk = table.primary_key.columns.values()[0]
    found: list[int] = []
    if only is not None:
        for chunk in chunks(list(only), batch):
            for row_id, data in session.execute(select(pk, column).where(pk.in_(chunk))):
                if data and any(p.search(data) for p in patterns):
                    found.append(row_id)
        return found
    last = after_id
    while True:
        rows = session.execute(select(pk, column).where(pk > last).order_by(pk).limit(batch)).all()
        if not rows:
            return found
        for row_id, data in rows:
            if data and any(p.search(bytes(data)) for p in patterns):
                found.append(row_id)
        last = rows[-1][0]


@dataclass
class ByteScan:
    """A scan of the email bytes made before the write transaction (see ``sweep``)."""

    needles: Needles
    through: dict[str, int]  # table name -> the highest id scanned
    matches: dict[str, list[int]]


def prescan(session: Session, needles: Needles) -> ByteScan:
    """Scan the email bytes in a read-only session, so the write transaction re-reads only the
    matches and the rows added since (on SQLite a write transaction holds the one write lock)."""
    through, matches = {}, {}
    patterns = needles.byte_patterns()
    for column in EMAIL_BYTES:
        table = column.table
        pk = table.primary_key.columns.values()[0]
        through[table.name] = session.scalar(select(func.coalesce(func.max(pk), 0))) or 0
        matches[table.name] = scan_bytes(session, column, patterns)
    return ByteScan(needles, through, matches)


def sweep(session: Session, needles: Needles, *, dry_run: bool = False, scan: ByteScan | None = None) -> dict[str, set[int]]:
    """Replace the address and names with ``[erased]`` everywhere they are left.

    Text and JSON columns of every table are pre-filtered in SQL (lower-cased LIKE) and replaced
    in Python with exact patterns: an address never matches inside a longer one
    (``ann@example.org`` leaves ``joann@example.org`` alone). Values in unique columns become
    ``[erased:<id>]`` so two of them cannot collide. Email bytes are replaced in place and the
    message's hash and size updated (its receipt keeps the hash of what arrived).

    Returns the primary keys changed (or, with ``dry_run``, that would change) per table.
    """
    changed: dict[str, set[int]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in SWEEP_SKIPS:
            continue
        with_names = table.name not in NAME_SWEEP_SKIPS
        patterns = needles.patterns(with_names=with_names)
        columns = _text_columns(table)
        if not columns:
            continue
        pk = table.primary_key.columns.values()[0]
        terms = needles.like_terms(with_names=with_names)
        condition = or_(*(func.lower(sql_cast(c, Text)).contains(t, autoescape=True) for c in columns for t in terms))
        for row in session.execute(select(pk, *columns).where(condition)).all():
            values = {}
            for column in columns:
                old = getattr(row, column.key)
                new = _replace(old, patterns)
                if new != old:
                    values[column.key] = f"[erased:{row[0]}]" if _is_unique(table, column) else new
            if values:
                changed.setdefault(table.name, set()).add(row[0])
                if not dry_run:
                    session.execute(update(table).where(pk == row[0]).values(**values))
    byte_patterns = needles.byte_patterns()
    for column in EMAIL_BYTES:
        table = column.table
        if scan is None:
            ids = scan_bytes(session, column, byte_patterns)
        else:  # re-check the earlier matches, and read the rows added since
            ids = scan_bytes(session, column, byte_patterns, only=scan.matches.get(table.name, []))
            ids += scan_bytes(session, column, byte_patterns, after_id=scan.through.get(table.name, 0))
        if ids:
            changed.setdefault(table.name, set()).update(ids)
        if dry_run:
            continue
        for row_id in ids:
            _replace_bytes(session, column, row_id, byte_patterns)
    return changed


def _replace_bytes(session: Session, column: Column, row_id: int, patterns: list[re.Pattern[bytes]]) -> None:
    table = column.table
    pk = table.primary_key.columns.values()[0]
    data = bytes(session.scalar(select(column).where(pk == row_id)) or b"")
    for pattern in patterns:
        data = pattern.sub(PLACEHOLDER.encode(), data)
    values: dict[str, Any] = {column.key: data}
    if "sha256" in table.c:
        original = session.scalar(select(table.c.sha256).where(pk == row_id))
        values.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        if table is Message.__table__:
            # The ledger keeps what arrived: the first hash, before any redaction.
            session.execute(
                update(Receipt).where(Receipt.message_id == row_id, Receipt.sha256.is_(None))
                .values(sha256=original, erased_at=utcnow())
            )
    session.execute(update(table).where(pk == row_id).values(**values))


# --------------------------------------------------------------------------------------------
# Redaction (retention): the shape stays, the text goes


REDACTED_SUBJECT = "(redacted)"


def redact_inquiries(session: Session, inquiry_ids: Sequence[int], at: dt.datetime, tally: Tally, key: bytes) -> None:
    """Remove bodies, attachments and addresses; keep category, status, dates and counts."""
    if not inquiry_ids:
        return
    contact_ids = contacts_of(session, inquiry_ids)
    for chunk in chunks(inquiry_ids):
        message_ids = list(session.scalars(select(Message.id).where(Message.inquiry_id.in_(chunk))))
        for message_chunk in chunks(message_ids):
            session.execute(
                update(Attachment).where(Attachment.message_id.in_(message_chunk))
                .values(content=None, filename=None)
            )
            tally.rows["attachments_redacted"] += session.scalar(
                select(func.count(Attachment.id)).where(Attachment.message_id.in_(message_chunk))
            ) or 0
            for message_id in message_chunk:
                session.execute(
                    update(Message).where(Message.id == message_id).values(
                        raw=b"", dedupe_key=f"redacted:{message_id}", message_id=None, in_reply_to=None,
                        references=None, sender_address=None, sender_name=None, reply_to=None,
                        to_address=None, recipients=None, subject=None, text_body=None, latest_reply=None,
                        automation_reasons=None, meta=None, parse_error=None, last_error=None,
                    )
                )
        tally.rows["messages_redacted"] += len(message_ids)
        session.execute(update(Classification).where(Classification.inquiry_id.in_(chunk)).values(reasons=None))
        for event in session.execute(select(Event.id, Event.detail).where(Event.inquiry_id.in_(chunk))):
            detail = {k: v for k, v in (event.detail or {}).items() if k in PLAIN_DETAIL_KEYS}
            session.execute(update(Event).where(Event.id == event.id).values(detail=detail or None))
        session.execute(
            update(Inquiry).where(Inquiry.id.in_(chunk)).values(
                subject=REDACTED_SUBJECT, thread_subject="", contact_id=None, redacted_at=at,
            )
        )
    tally.rows["inquiries_redacted"] += len(inquiry_ids)
    delete_orphan_contacts(session, contact_ids, tally, key, at)


# --------------------------------------------------------------------------------------------
# Models that learned from erased text


def withdraw_models(session: Session, inquiry_ids: Sequence[int], message_ids: Sequence[int]) -> int:
    """Delete trained models that may have learned from these inquiries' staff labels.

    A model stores its vocabulary, word pairs of the texts it was fitted on included. Every model
    trained after the earliest staff label on any of these inquiries may hold their words, so it
    is deleted and the newest earlier model (or the shipped seed model) becomes active. Must run
    before the labels are deleted.
    """
    earliest = None
    for chunk in chunks(inquiry_ids):
        found = session.scalar(
            select(func.min(Classification.created_at)).where(Classification.inquiry_id.in_(chunk), Classification.source == "staff")
        )
        earliest = found if earliest is None or (found is not None and found < earliest) else earliest
    for chunk in chunks(message_ids):
        found = session.scalar(
            select(func.min(Classification.created_at)).where(Classification.message_id.in_(chunk), Classification.source == "staff")
        )
        earliest = found if earliest is None or (found is not None and found < earliest) else earliest
    if earliest is None:
        return 0
    tainted = list(session.scalars(select(ModelVersion.id).where(ModelVersion.created_at >= earliest)))
    if not tainted:
        return 0
    was_active = session.scalar(select(func.count(ModelVersion.id)).where(ModelVersion.id.in_(tainted), ModelVersion.active.is_(True)))
    session.execute(delete(ModelVersion).where(ModelVersion.id.in_(tainted)))
    if was_active:
        newest = session.scalar(select(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1))
        if newest is not None:
            session.execute(update(ModelVersion).where(ModelVersion.id == newest).values(active=True))
    return len(tainted)


def address_hash(key: bytes, address: str) -> str:
    """The keyed hash the audit trail keeps instead of an erased address."""
    return keyed_hash(key, ADDRESS_PURPOSE, address)


def audit(session: Session, kind: str, actor: str, detail: dict[str, Any]) -> Event:
    """The one row an erasure leaves: who, when, what kind and how much (never the text).

    Recorded like every fact (``intake.events``); it names no inquiry, so it owes no card or line.
    """
    from intake.events import record_event

    return record_event(session, None, actor[:64], kind, **detail)
