"""Threading: which inquiry a message continues, and who takes part in a conversation.

A reference (In-Reply-To/References or an ``[#ID]`` subject token) joins only when the sender is
already a participant; other help desks learned that strangers' mail gets merged into the wrong
ticket otherwise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from intake import mail, tickets
from intake.inquiries.store import _dialect_insert
from intake.mail.types import ParsedEmail
from intake.models import Contact, Inquiry, Message, utcnow

FALLBACK_THREAD_WINDOW = dt.timedelta(days=30)


def contact_id_for(session: Session, address: str, name: str | None) -> int:
    """The contact for an address, created on first sight (safe when two jobs race)."""
    address = address[:320]
    found = session.execute(select(Contact.id, Contact.name).where(Contact.address == address)).first()
    if found is not None:
        if name and not found.name:
            session.execute(
                Contact.__table__.update().where(Contact.id == found.id).values(name=name[:320])
            )
        return found.id
    insert = _dialect_insert(session.connection().dialect.name)
    new_id = session.execute(
        insert(Contact.__table__)
        .values(address=address, name=(name or None) and name[:320], created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["address"])
        .returning(Contact.__table__.c.id)
    ).scalar()
    if new_id is None:  # another job created it a moment ago
        new_id = session.scalar(select(Contact.id).where(Contact.address == address))
    return new_id


def is_participant(session: Session, inquiry: Inquiry, addresses: set[str], own_address: str | None) -> bool:
    """Whether any of these addresses already takes part in the inquiry: its contact, or the
    sender, reply-to, recipient or cc of one of its messages (never our own address).

    Asked with targeted queries, so a long conversation costs no more than a short one.
    """
    addresses = {a for a in addresses if a}
    if own_address:
        addresses.discard(mail.normalize_address(own_address))
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


def find_thread(
    session: Session, parsed: ParsedEmail, *, own_address: str | None = None, now: dt.datetime | None = None,
    settings: Any = None,
) -> Inquiry | None:
    """The inquiry this message continues, or None for a new one.

    A subject token with a valid keyed tag (``[#12-k3f9qa]``, intake.tickets) joins its inquiry:
    only someone who received our mail knows it. Any other reference (In-Reply-To/References, the
    old ``[#12]`` form, a wrong tag) joins only when the sender (From, not a Reply-To anyone can
    write) is already a participant: other help desks learned that strangers' mail gets merged
    into the wrong ticket otherwise. The fallback joins the same sender's inquiry with the same
    subject (after stripping Re:/Fwd:/AW:/SV:...) seen within 30 days. ``settings`` holds the
    key tags are checked with; without it every token counts as the old form.
    """
    sender = parsed.sender.address if parsed.sender else ""
    if not sender:
        return None
    candidates: list[Inquiry] = []
    ticket = mail.find_ticket(parsed.subject or "")
    if ticket is not None:
        inquiry = session.get(Inquiry, ticket.inquiry_id)
        if inquiry is not None:
            if settings is not None and tickets.is_valid(session, settings, inquiry.id, ticket.tag):
                return inquiry
            candidates.append(inquiry)
    refs = [r for r in [parsed.in_reply_to, *reversed(parsed.references)] if r]
    if refs:
        rows = session.execute(
            select(Message.inquiry_id)
            .where(Message.message_id.in_(refs[:100]), Message.inquiry_id.is_not(None))
            .order_by(Message.id.desc())
        ).all()
        for (inquiry_id,) in rows:
            inquiry = session.get(Inquiry, inquiry_id)
            if inquiry is not None and inquiry not in candidates:
                candidates.append(inquiry)
    for inquiry in candidates:
        if is_participant(session, inquiry, {sender}, own_address):
            return inquiry
    subject_key = mail.thread_subject(parsed.subject or "")
    if subject_key:
        since = (now or utcnow()) - FALLBACK_THREAD_WINDOW
        return session.scalars(
            select(Inquiry)
            .join(Contact, Inquiry.contact_id == Contact.id)
            .where(
                Contact.address == sender,
                Inquiry.thread_subject == subject_key[:500],
                Inquiry.last_message_at >= since,
            )
            .order_by(Inquiry.last_message_at.desc())
            .limit(1)
        ).first()
    return None
