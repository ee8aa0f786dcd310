"""Reading: what `intake list` / `intake show` and the Slack queries print.

A plain `intake list` reads the same summaries without the ORM (``intake.summaries.read_page``).
"""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake import recipients
from intake.inquiries.common import get_inquiry
from intake.models import Inquiry, Message
from intake.summaries import iso, summary


def _filtered(query, status: str | None, category: str | None):
    if status:
        query = query.where(Inquiry.status == status)
    if category:
        query = query.where(Inquiry.category == category)
    return query


def list_inquiries(
    session: Session, *, status: str | None = None, category: str | None = None, limit: int | None = None
) -> list[Inquiry]:
    query = _filtered(select(Inquiry), status, category).order_by(Inquiry.received_at.desc(), Inquiry.id.desc())
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_inquiries(session: Session, *, status: str | None = None, category: str | None = None) -> int:
    """How many ``list_inquiries`` would return without a limit (`intake list`'s "N more")."""
    return session.scalar(_filtered(select(func.count()).select_from(Inquiry), status, category)) or 0


def inquiry_summary(inquiry: Inquiry) -> dict[str, Any]:
    contact = inquiry.contact
    return summary(
        id=inquiry.id, status=inquiry.status, category=inquiry.category, confidence=inquiry.confidence,
        needs_review=inquiry.needs_review, subject=inquiry.subject,
        address=contact.address if contact else None, name=contact.name if contact else None,
        assignee=inquiry.assignee, language=inquiry.language, received_at=inquiry.received_at,
    )


def _shared_message_ids(session: Session, messages: Sequence[Message]) -> dict[str, int]:
    """How many *other* stored messages carry each of these Message-IDs (a contact form or a
    mailer reusing one): shown so nobody mistakes one message for the other."""
    ids = {m.message_id for m in messages if m.message_id and m.direction == "inbound"}
    if not ids:
        return {}
    rows = session.execute(
        select(Message.message_id, func.count(Message.id))
        .where(Message.message_id.in_(ids), Message.direction == "inbound")
        .group_by(Message.message_id)
    ).all()
    return {mid: count - 1 for mid, count in rows if count > 1}


def inquiry_detail(session: Session, inquiry_id: int) -> dict[str, Any]:
    inquiry = get_inquiry(session, inquiry_id)
    detail = inquiry_summary(inquiry)
    shared = _shared_message_ids(session, inquiry.messages)
    detail.update(
        reply_to=recipients.reply_address(session, inquiry_id),  # where a staff reply goes now
        first_response_at=iso(inquiry.first_response_at),
        first_response_due=iso(inquiry.first_response_due),
        response_due=iso(inquiry.response_due),
        closed_at=iso(inquiry.closed_at),
        messages=[
            {
                "id": m.id,
                "direction": m.direction,
                "kind": m.kind,
                "provider": m.provider,
                "message_id": m.message_id,
                "message_id_shared_with": shared.get(m.message_id or "", 0),
                "from": m.sender_address,
                "to": m.to_address,
                "subject": m.subject,
                "date": iso(m.date),
                "received_at": iso(m.created_at),
                "parse_status": m.parse_status,
                "parse_error": m.parse_error,
                "authentication": m.authentication,
                "authentication_reasons": m.authentication_reasons or [],
                "reply_to": m.reply_to,
                "state": m.state,
                "language": m.language,
                "automated": m.automated,
                "automation_reasons": m.automation_reasons or [],
                "latest_reply": m.latest_reply,
                "sha256": m.sha256,
                "size": m.size,
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
                    for a in m.attachments
                ],
            }
            for m in inquiry.messages
        ],
        classifications=[
            {
                "category": c.category,
                "confidence": c.confidence,
                "source": c.source,
                "model_version": c.model_version,
                "reasons": c.reasons or [],
                "actor": c.actor,
                "at": iso(c.created_at),
            }
            for c in inquiry.classifications
        ],
        events=[
            {"actor": e.actor, "kind": e.kind, "detail": e.detail or {}, "at": iso(e.created_at)}
            for e in inquiry.events
        ],
    )
    return detail


def search_inquiries(session: Session, words: str | Sequence[str], *, limit: int = 20) -> list[Inquiry]:
    """Inquiries whose subject, sender or message text contain every word (case-insensitive).

    The matching rule lives in ``intake.search`` (the search language), which this calls.
    """
    from intake import search

    if isinstance(words, str):
        words = words.split()
    return search.search(session, search.Query(words=tuple(list(words)[:search.MAX_WORDS])), limit=limit)
