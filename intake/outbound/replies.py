"""Staff replies: turning text written in Slack into a queued, fully built outbound message.

The message is built completely at queue time (Message-ID, headers, the exact bytes) and stored,
so that whatever happens to the sending job the applicant can only ever receive those bytes, and
a resend after a crash is byte-identical and threads the same way.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.events import record_event
from intake import recipients, tickets
from intake.models import Inquiry, Message, utcnow
from intake.outbound.compose import (
    Composed,
    Draft,
    clean_msgid,
    compose,
    references_chain,
    reply_subject,
)
from intake.outbound.options import OutboundOptions, load_options
from intake.sla import clock as sla_clock

if TYPE_CHECKING:  # pragma: no cover
    from intake.config import Settings
    from intake.runtime import Runtime


class ReplyError(ValueError):
    """A reply cannot be queued (no inquiry, no usable address, empty text): say why in Slack."""


def last_inbound(session: Session, inquiry_id: int) -> Message | None:
    """The applicant's most recent message: the one a reply answers (never an internal note)."""
    return session.scalars(
        select(Message)
        .where(Message.inquiry_id == inquiry_id, Message.direction == "inbound")
        .order_by(Message.id.desc())
        .limit(1)
    ).first()


def outbound_row(
    composed: Composed,
    *,
    inquiry_id: int | None,
    kind: str,
    body: str,
    author: str | None,
    options: OutboundOptions,
    dedupe_key: str | None = None,
    meta: dict | None = None,
) -> dict:
    """The columns of a queued outbound message (one definition for one row or a batch)."""
    refs = composed.message.get("References")
    # Addresses are compared case-insensitively across intake (mail.normalize_address): the
    # recipient is kept normalized, so the rate caps compare it as stored, through its index.
    to_address = composed.to_address.lower()
    return dict(
        inquiry_id=inquiry_id,
        direction="outbound",
        kind=kind,
        source="email",
        provider="smtp",
        dedupe_key=dedupe_key or f"out:{composed.message_id}",
        message_id=composed.message_id,
        in_reply_to=clean_msgid(composed.message.get("In-Reply-To")),
        references=" ".join(clean_msgid(r) or "" for r in str(refs).split()) if refs else None,
        sender_address=options.from_address,
        sender_name=options.config.from_name,
        to_address=to_address,
        recipients=[to_address],
        subject=composed.subject,
        date=utcnow(),
        text_body=body,
        raw=composed.raw,
        sha256=hashlib.sha256(composed.raw).hexdigest(),
        size=len(composed.raw),
        parse_status="parsed",
        state="queued",
        attempts=0,
        author=author,
        meta=meta or {},
    )


def store_outbound(
    session: Session,
    composed: Composed,
    *,
    inquiry_id: int | None,
    kind: str,
    body: str,
    author: str | None,
    options: OutboundOptions,
    dedupe_key: str | None = None,
    meta: dict | None = None,
) -> Message:
    """Insert the outbound row in state ``queued``; the caller records the event that owes its
    ``email.send`` delivery, in the same transaction."""
    row = Message(**outbound_row(composed, inquiry_id=inquiry_id, kind=kind, body=body, author=author,
                                 options=options, dedupe_key=dedupe_key, meta=meta))
    session.add(row)
    session.flush()
    return row


def _with_signature(body: str, signature: str) -> str:
    body = body.rstrip()
    return f"{body}\n\n{signature.strip()}\n" if signature.strip() else body + "\n"


def queue_reply(
    session: Session, inquiry_id: int, body: str, author: str, *, settings: "Settings",
    kind: str = "reply", dedupe_key: str | None = None, to_address: str | None = None,
) -> Message:
    """Create the outbound ``Message`` for a staff reply; :func:`send_reply` records the event that
    owes its sending in the same transaction.

    The reply goes to the conversation's address (intake.recipients: where staff last replied,
    else the address that opened the inquiry), or to ``to_address`` when staff picked one of the
    other addresses the inquiry offers; never to a Reply-To nobody chose. Its subject is
    ``Re: <subject> [#ID-tag]`` and it threads on the applicant's last message.
    ``dedupe_key`` makes a repeated request (the same "Answer all" submitted twice) queue nothing
    new: the messages table's unique key refuses the second row.
    """
    options = load_options(settings)
    if not body or not body.strip():
        raise ReplyError("the reply is empty")
    inquiry = session.get(Inquiry, inquiry_id)
    if inquiry is None:
        raise ReplyError(f"there is no inquiry #{inquiry_id}")
    parent = last_inbound(session, inquiry_id)
    try:
        recipient = recipients.choose(session, inquiry_id, to_address)
    except recipients.NotOffered as exc:
        raise ReplyError(str(exc)) from None
    if recipient is None:
        raise ReplyError(f"inquiry #{inquiry_id} has no valid address to reply to")
    composed = compose(
        Draft(
            from_address=options.from_address,
            from_name=options.config.from_name,
            to_address=recipient.address,
            to_name=recipient.name,
            subject=reply_subject(inquiry.subject or (parent.subject if parent else None), inquiry_id,
                                  tickets.tag(session, settings, inquiry_id)),
            body=_with_signature(body, options.config.signature),
            in_reply_to=parent.message_id if parent else None,
            references=references_chain(
                parent.references if parent else None, parent.message_id if parent else None
            ),
        )
    )
    row = store_outbound(
        session, composed, inquiry_id=inquiry_id, kind=kind, body=body, author=author,
        options=options, dedupe_key=dedupe_key,
    )
    # The staff member answered now (when they sent it, not when SMTP got to it): the response
    # target is met in the same transaction as the stored reply.
    sla_clock.responded(inquiry, row.created_at or utcnow())
    return row


def send_reply(rt: "Runtime", inquiry_id: int, body: str, author: str, *, version: int | None = None,
               to_address: str | None = None) -> int:
    """Queue a staff reply: the outbound row, its ``reply_queued`` event and (through that event)
    the ``email.send`` delivery commit together. Returns the message row id.

    ``version`` is the card's version when the reply came from a button on it: of two clicks on
    the same drawing only the first queues a reply (intake.inquiries.lifecycle).
    """
    from intake.inquiries.lifecycle import touch_for_reply

    with rt.db.session() as session:
        touch_for_reply(session, inquiry_id, version)
        message = queue_reply(session, inquiry_id, body, author, settings=rt.settings, to_address=to_address)
        record_event(session, inquiry_id, author, "reply_queued", message_id=message.id)
        return message.id
