"""Everything held about a person, as one JSON document (a subject access request).

The same rule as ``forget`` decides what is theirs (``footprint``): their inquiries whole, as
``intake show --json`` gives them (classifications, events, our replies) with every message's
raw bytes in base64, so the copy is exact; their messages in other conversations; and a list of
the other messages that merely name them. Those belong to someone else too, so only where and
when is listed, not their content.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.inquiries.queries import inquiry_detail
from intake.models import Contact, Inquiry, Message, utcnow
from intake.privacy import erasure, footprint

FORMAT = "intake.subject-access/1"


def _iso(value: dt.datetime | None) -> str | None:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=value.tzinfo or dt.timezone.utc).isoformat() if value else None


def _full(message: Message) -> dict[str, Any]:
    """What `intake show` leaves out and a copy for the person must have: the exact bytes."""
    return {
        "raw_base64": base64.b64encode(message.raw or b"").decode("ascii"),
        "text": message.text_body, "reply_to": message.reply_to, "recipients": message.recipients or [],
        "from_name": message.sender_name, "sent_at": _iso(message.sent_at), "author": message.author,
    }


def _messages(session: Session, messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as `intake show --json` gives them (one rule for both), plus ``_full``."""
    by_inquiry: dict[int, dict[int, dict[str, Any]]] = {}
    out = []
    for message in messages:
        if message.inquiry_id is None:  # stored, not processed yet: only what the row knows
            shown = {"id": message.id, "direction": message.direction, "received_at": _iso(message.created_at),
                     "sha256": message.sha256, "size": message.size, "parse_status": message.parse_status}
        else:
            if message.inquiry_id not in by_inquiry:
                detail = inquiry_detail(session, message.inquiry_id)
                by_inquiry[message.inquiry_id] = {m["id"]: m for m in detail["messages"]}
            shown = dict(by_inquiry[message.inquiry_id][message.id], inquiry_id=message.inquiry_id)
        out.append({**shown, **_full(message)})
    return out


def _inquiry(session: Session, inquiry: Inquiry) -> dict[str, Any]:
    detail = inquiry_detail(session, inquiry.id)
    detail["messages"] = _messages(session, list(inquiry.messages))
    return detail


def export_person(session: Session, address: str) -> dict[str, Any]:
    found = footprint.find(session, address)
    contact = session.get(Contact, found.contact_id) if found.contact_id is not None else None
    inquiries = list(session.scalars(select(Inquiry).where(Inquiry.id.in_(found.inquiry_ids or [0])).order_by(Inquiry.id)))
    elsewhere = list(session.scalars(select(Message).where(Message.id.in_(found.message_ids or [0])).order_by(Message.id)))
    own = {m.id for i in inquiries for m in i.messages} | {m.id for m in elsewhere}
    named = erasure.sweep(session, erasure.Needles(found.address, found.names), dry_run=True).get("messages", set())
    mentions = [
        {"message_id": m.id, "inquiry_id": m.inquiry_id, "date": _iso(m.date), "received_at": _iso(m.created_at)}
        for m in session.scalars(select(Message).where(Message.id.in_(sorted(named - own) or [0])).order_by(Message.id))
    ]
    return {
        "format": FORMAT,
        "address": found.address,
        "exported_at": utcnow().isoformat(),
        "contact": {"address": contact.address, "name": contact.name, "created_at": _iso(contact.created_at)}
        if contact is not None else None,
        "inquiries": [_inquiry(session, i) for i in inquiries],
        "messages_in_other_conversations": _messages(session, elsewhere),
        "mentioned_in": mentions,
    }
