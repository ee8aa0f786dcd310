"""Threading: which inquiry a message continues, and who takes part in a conversation.

A subject token with a valid keyed tag (``[#12-k3f9qa]``, intake.tickets) joins its inquiry. Any
other reference (In-Reply-To/References, the old ``[#12]`` form, a wrong tag) joins only when the
sender is already a participant; other help desks learned that strangers' mail gets merged into
the wrong ticket otherwise.

The rules are applied to a batch of messages at once (the pipeline processes several stored
messages in one transaction when the queue is deep): what the database is asked is asked once
for the whole batch, and the messages are decided in order, so that a message may continue an
inquiry an earlier message of the same batch opened or joined, exactly as if each had been
processed and committed one after the other. ``find_thread`` is the same rule for one message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from intake import mail, tickets
from intake.inquiries.store import _dialect_insert
from intake.mail.types import ParsedEmail
from intake.models import Contact, Inquiry, Message, utcnow

FALLBACK_THREAD_WINDOW = dt.timedelta(days=30)
MAX_REFERENCES = 100


def contact_ids_for(session: Session, people: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """The contact id of each address (created on first sight; safe when two jobs race), keyed
    by the address as stored (trimmed to the column's 320 characters). A name is filled in when
    the contact had none."""
    wanted: dict[str, str | None] = {}
    for address, name in people:
        key = address[:320]
        if not wanted.get(key):
            wanted[key] = (name or None) and name[:320]
    if not wanted:
        return {}
    table = Contact.__table__
    ids: dict[str, int] = {}
    named: list[dict] = []
    for row in session.execute(select(table.c.id, table.c.address, table.c.name).where(table.c.address.in_(wanted))):
        ids[row.address] = row.id
        if wanted[row.address] and not row.name:
            named.append({"contact_id": row.id, "new_name": wanted[row.address]})
    if named:
        from sqlalchemy import bindparam

        session.execute(
            table.update().where(table.c.id == bindparam("contact_id"), table.c.name.is_(None))
            .values(name=bindparam("new_name")),
            named,
        )
    missing = [a for a in wanted if a not in ids]
    if missing:
        insert = _dialect_insert(session.connection().dialect.name)
        now = utcnow()
        inserted = session.execute(
            insert(table).on_conflict_do_nothing(index_elements=["address"]).returning(table.c.id, table.c.address),
            [{"address": a, "name": wanted[a], "created_at": now} for a in missing],
        )
        ids.update({row.address: row.id for row in inserted})
        raced = [a for a in missing if a not in ids]
        if raced:  # another job created them a moment ago
            ids.update({row.address: row.id for row in session.execute(
                select(table.c.id, table.c.address).where(table.c.address.in_(raced)))})
    return ids


def contact_id_for(session: Session, address: str, name: str | None) -> int:
    """The contact for one address, created on first sight (safe when two jobs race)."""
    return contact_ids_for(session, [(address, name)])[address[:320]]


def is_participant(session: Session, inquiry: Inquiry, addresses: set[str], own_address: str | None) -> bool:
    """Whether any of these addresses already takes part in the inquiry: its contact, or the
    sender, reply-to, recipient or cc of one of its messages (never our own address).

    Asked with targeted queries, so a long conversation costs no more than a short one.
    """
    addresses = _without_own(addresses, own_address)
    if not addresses:
        return False
    if inquiry.contact is not None and inquiry.contact.address in addresses:
        return True
    direct = session.scalar(
        select(Message.id)
        .where(
            Message.inquiry_id == inquiry.id,
            or_(
                Message.sender_address.in_(addresses),
                Message.reply_to.in_(addresses),
                Message.to_address.in_(addresses),
            ),
        )
        .limit(1)
    )
    if direct is not None:
        return True
    # Recipients are a JSON list (portable across SQLite and PostgreSQL): read the latest few.
    recent = session.scalars(
        select(Message.recipients)
        .where(Message.inquiry_id == inquiry.id, Message.recipients.is_not(None))
        .order_by(Message.id.desc())
        .limit(50)
    )
    return any(addresses.intersection(r for r in recipients or [] if isinstance(r, str)) for recipients in recent)


def _without_own(addresses: Iterable[str], own_address: str | None) -> set[str]:
    found = {a for a in addresses if a}
    if own_address:
        found.discard(mail.normalize_address(own_address))
    return found


@dataclass(frozen=True)
class ThreadChoice:
    """Where a message goes: an inquiry in the database, or the inquiry that an earlier message
    of the same batch opened (``same_as``, that message's index). Neither: a new inquiry."""

    inquiry: Inquiry | None = None
    same_as: int | None = None

    @property
    def is_new(self) -> bool:
        return self.inquiry is None and self.same_as is None


NEW = ThreadChoice()


@dataclass
class _Batch:
    """What the earlier messages of a batch did, for the later ones (not yet in the database)."""

    by_header: dict[str, int] = field(default_factory=dict)  # Message-ID -> index in the batch
    participants: dict[tuple, set[str]] = field(default_factory=dict)  # conversation -> addresses
    subjects: dict[tuple[str, str], tuple] = field(default_factory=dict)  # (contact, subject) -> conversation
    conversation: dict[int, tuple] = field(default_factory=dict)  # index -> conversation


def _conversation(choice: ThreadChoice, index: int) -> tuple:
    if choice.inquiry is not None:
        return ("db", choice.inquiry.id)
    return ("new", index if choice.same_as is None else choice.same_as)


def find_threads(
    session: Session, messages: Sequence[ParsedEmail | None], *, own_address: str | None = None,
    now: dt.datetime | None = None, message_ids: Sequence[int] | None = None, settings: Any = None,
) -> list[ThreadChoice]:
    """For each message (None: not parsed, left out), the inquiry it continues.

    A subject token with a valid keyed tag joins its inquiry: only someone who received our mail
    knows it. Any other reference (In-Reply-To/References, the old ``[#12]`` form, a wrong tag)
    joins only when the sender (From, not a Reply-To anyone can write) is already a participant.
    The fallback joins the same sender's inquiry with the same subject (after stripping
    Re:/Fwd:/AW:/SV:...) seen within 30 days. ``settings`` holds the key tags are checked with;
    without it every token counts as the old form. ``message_ids`` (the rows' ids) order
    references as the database would: the most recent message first.
    """
    now = now or utcnow()
    since = now - FALLBACK_THREAD_WINDOW
    ids = list(message_ids) if message_ids is not None else list(range(len(messages)))
    found_tickets = [mail.find_ticket(p.subject or "") if p is not None else None for p in messages]
    tokens = {t.inquiry_id for t in found_tickets if t is not None}
    refs_of = [[r for r in [p.in_reply_to, *reversed(p.references)] if r][:MAX_REFERENCES] if p is not None else []
               for p in messages]
    all_refs = {r for refs in refs_of for r in refs}
    by_id: dict[int, Inquiry] = {}
    if tokens:
        by_id.update({i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(tokens)))})
    ref_rows: list[tuple[str, int]] = []
    if all_refs:
        ref_rows = [(row.message_id, row.inquiry_id) for row in session.execute(
            select(Message.message_id, Message.inquiry_id)
            .where(Message.message_id.in_(all_refs), Message.inquiry_id.is_not(None))
            .order_by(Message.id.desc())
        )]
        wanted = {inquiry_id for _, inquiry_id in ref_rows} - set(by_id)
        if wanted:
            by_id.update({i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(wanted)))})
    fallback = _subject_fallback(session, messages, since)

    batch = _Batch()
    choices: list[ThreadChoice] = []
    for index, parsed in enumerate(messages):
        if parsed is None:
            choices.append(NEW)
            continue
        choice = _decide(session, parsed, index, ids, refs_of[index], found_tickets[index], by_id, ref_rows,
                         fallback, batch, own_address, settings)
        choices.append(choice)
        if choice.inquiry is not None:
            by_id[choice.inquiry.id] = choice.inquiry
        _remember(batch, parsed, index, choice)
    return choices


def find_thread(
    session: Session, parsed: ParsedEmail, *, own_address: str | None = None, now: dt.datetime | None = None,
    settings: Any = None,
) -> Inquiry | None:
    """The inquiry this message continues, or None for a new one (``find_threads`` for one)."""
    return find_threads(session, [parsed], own_address=own_address, now=now, settings=settings)[0].inquiry


def _subject_fallback(session: Session, messages: Sequence[ParsedEmail | None],
                      since: dt.datetime) -> dict[tuple[str, str], Inquiry]:
    """The most recent inquiry of each (sender, thread subject) pair in the window, in one query."""
    pairs = {(p.sender.address, key[:500]) for p in messages
             if p is not None and p.sender and p.sender.address and (key := mail.thread_subject(p.subject or ""))}
    if not pairs:
        return {}
    found: dict[tuple[str, str], Inquiry] = {}
    rows = session.execute(
        select(Inquiry, Contact.address)
        .join(Contact, Inquiry.contact_id == Contact.id)
        .where(
            Contact.address.in_({a for a, _ in pairs}),
            Inquiry.thread_subject.in_({s for _, s in pairs}),
            Inquiry.last_message_at >= since,
        )
        .order_by(Inquiry.last_message_at.desc())
    )
    for inquiry, address in rows:
        key = (address, inquiry.thread_subject)
        if key in pairs and key not in found:
            found[key] = inquiry
    return found


def _decide(session: Session, parsed: ParsedEmail, index: int, ids: list[int], refs: list[str],
            ticket: Any, by_id: dict[int, Inquiry], ref_rows: list[tuple[str, int]],
            fallback: dict[tuple[str, str], Inquiry], batch: _Batch, own_address: str | None,
            settings: Any) -> ThreadChoice:
    sender = parsed.sender.address if parsed.sender else ""
    if not sender:
        return NEW
    # Candidates in the order one-at-a-time processing would meet them: the ticket token, then
    # the referenced messages, most recent first (earlier messages of this batch are the newest).
    candidates: list[ThreadChoice] = []
    if ticket is not None and ticket.inquiry_id in by_id:
        inquiry = by_id[ticket.inquiry_id]
        if settings is not None and tickets.is_valid(session, settings, inquiry.id, ticket.tag):
            return ThreadChoice(inquiry=inquiry)
        candidates.append(ThreadChoice(inquiry=inquiry))
    in_batch = sorted((i for r in refs if (i := batch.by_header.get(r)) is not None and i < index),
                      key=lambda i: ids[i], reverse=True)
    for i in in_batch:
        candidates.append(_choice_for(batch.conversation[i], by_id))
    wanted = set(refs)
    for message_id, inquiry_id in ref_rows:
        if message_id in wanted and inquiry_id in by_id:
            candidates.append(ThreadChoice(inquiry=by_id[inquiry_id]))
    seen: set[tuple] = set()
    addresses = _without_own({sender}, own_address)
    for candidate in candidates:
        conversation = _conversation(candidate, -1)
        if conversation in seen:
            continue
        seen.add(conversation)
        if addresses & batch.participants.get(conversation, set()):
            return candidate
        if candidate.inquiry is not None and is_participant(session, candidate.inquiry, addresses, own_address):
            return candidate
    subject_key = mail.thread_subject(parsed.subject or "")[:500]
    if subject_key:
        earlier = batch.subjects.get((sender, subject_key))
        if earlier is not None:
            return _choice_for(earlier, by_id)
        inquiry = fallback.get((sender, subject_key))
        if inquiry is not None:
            return ThreadChoice(inquiry=inquiry)
    return NEW


def _choice_for(conversation: tuple, by_id: dict[int, Inquiry]) -> ThreadChoice:
    kind, value = conversation
    return ThreadChoice(inquiry=by_id[value]) if kind == "db" else ThreadChoice(same_as=value)


def _remember(batch: _Batch, parsed: ParsedEmail, index: int, choice: ThreadChoice) -> None:
    """Record what this message makes true for the later messages of the batch."""
    conversation = _conversation(choice, index)
    batch.conversation[index] = conversation
    if parsed.message_id:
        batch.by_header.setdefault(parsed.message_id, index)
    people = batch.participants.setdefault(conversation, set())
    people.update(a.address for a in [parsed.sender, parsed.reply_to, *parsed.to, *parsed.cc] if a and a.address)
    if choice.inquiry is not None:
        contact = choice.inquiry.contact
        if contact is not None:
            batch.subjects[(contact.address, choice.inquiry.thread_subject)] = conversation
    elif choice.same_as is None and parsed.sender and parsed.sender.address:
        # A new inquiry: its contact is the sender and its thread subject this message's.
        key = mail.thread_subject(parsed.subject or "")[:500]
        if key:
            batch.subjects[(parsed.sender.address, key)] = conversation
