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

if TYPE_CHECKING:  # pragma: no cover
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
    """Insert the outbound row in state ``queued``; the caller commits, then enqueues sending."""
    refs = composed.message.get("References")
    row = Message(
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
        sender_name=options.from_name,
        to_address=composed.to_address,
        recipients=[composed.to_address],
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
    session.add(row)
    session.flush()
    return row


def _with_signature(body: str, signature: str) -> str:
    body = body.rstrip()
    return f"{body}\n\n{signature.strip()}\n" if signature.strip() else body + "\n"


def queue_reply(
    session: Session, inquiry_id: int, body: str, author: str, *, kind: str = "reply",
    settings=None, to_address: str | None = None,
) -> Message:
    """Create the outbound ``Message`` for a staff reply; the caller commits and enqueues
    ``outbound.send(message.id)`` (or uses :func:`send_reply`, which does both).

    The reply goes to the conversation's address (intake.recipients: where staff last replied,
    else the address that opened the inquiry), or to ``to_address`` when staff picked one of the
    other addresses the inquiry offers; never to a Reply-To nobody chose. Its subject is
    ``Re: <subject> [#ID-tag]`` and it threads on the applicant's last message.
    ``settings`` defaults to the environment's; the Slack layer passes ``rt.settings``.
    """
    from intake.config import Settings

    settings = settings or Settings.from_env()
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
            from_name=options.from_name,
            to_address=recipient.address,
            to_name=recipient.name,
            subject=reply_subject(inquiry.subject or (parent.subject if parent else None), inquiry_id,
                                  tickets.tag(session, settings, inquiry_id)),
            body=_with_signature(body, options.signature),
            in_reply_to=parent.message_id if parent else None,
            references=references_chain(
                parent.references if parent else None, parent.message_id if parent else None
            ),
        )
    )
    return store_outbound(
        session, composed, inquiry_id=inquiry_id, kind=kind, body=body, author=author,
        options=options,
    )


def send_reply(rt: "Runtime", inquiry_id: int, body: str, author: str, *, to_address: str | None = None) -> int:
    """Queue a staff reply, commit, and enqueue the sending job; returns the message row id."""
    with rt.db.session() as session:
        message = queue_reply(session, inquiry_id, body, author, settings=rt.settings, to_address=to_address)
        message_row_id = message.id
    rt.enqueue("outbound.send", message_row_id)
    return message_row_id
