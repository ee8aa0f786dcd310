"""Everything held about a person, as one JSON document (a subject access request).

The same rule as ``forget`` decides what is theirs (``footprint``): their inquiries whole (every
message with its raw bytes in base64, so the copy is exact; attachments; classifications;
events; our replies), their messages in other conversations, and a list of the other messages
that merely name them. Those belong to someone else too, so only where and when is listed, not
their content.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.models import Contact, Inquiry, Message, utcnow
from intake.privacy import erasure, footprint

FORMAT = "intake.subject-access/1"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def _message(m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "inquiry_id": m.inquiry_id, "direction": m.direction, "kind": m.kind,
        "source": m.source, "provider": m.provider, "message_id": m.message_id,
        "from": m.sender_address, "from_name": m.sender_name, "reply_to": m.reply_to,
        "to": m.to_address, "recipients": m.recipients or [], "subject": m.subject,
        "date": _iso(m.date), "received_at": _iso(m.created_at), "sent_at": _iso(m.sent_at),
        "state": m.state, "parse_status": m.parse_status, "language": m.language,
        "automated": m.automated, "text": m.text_body, "author": m.author,
        "sha256": m.sha256, "size": m.size,
        "raw_base64": base64.b64encode(m.raw or b"").decode("ascii"),
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in m.attachments
        ],
    }


def _inquiry(inquiry: Inquiry) -> dict[str, Any]:
    return {
        "id": inquiry.id, "subject": inquiry.subject, "status": inquiry.status,
        "category": inquiry.category, "confidence": inquiry.confidence, "language": inquiry.language,
        "received_at": _iso(inquiry.received_at), "closed_at": _iso(inquiry.closed_at),
        "first_response_at": _iso(inquiry.first_response_at),
        "messages": [_message(m) for m in inquiry.messages],
        "classifications": [
            {"category": c.category, "confidence": c.confidence, "source": c.source,
             "model_version": c.model_version, "reasons": c.reasons or [], "actor": c.actor,
             "at": _iso(c.created_at)}
            for c in inquiry.classifications
        ],
        "events": [
            {"kind": e.kind, "actor": e.actor, "detail": e.detail or {}, "at": _iso(e.created_at)}
            for e in inquiry.events
        ],
    }


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
        "inquiries": [_inquiry(i) for i in inquiries],
        "messages_in_other_conversations": [_message(m) for m in elsewhere],
        "mentioned_in": mentions,
    }
