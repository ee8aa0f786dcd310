"""Erase a person, delete one inquiry: the domain side, in the caller's transaction.

Both leave exactly one audit ``Event`` (no inquiry, ``actor`` = who asked): for a person the
keyed hash of the address (``intake.keys``), never the address; counts of what went; the ids of
the inquiries that went. Whatever Slack must show afterwards comes back as ``SlackCleanup``
plans for the caller to hand over once the transaction is committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.keys import secret_key
from intake.models import Attachment, Contact, Event, Inquiry, Message, utcnow
from intake.privacy import erasure, footprint
from intake.privacy.erasure import ByteScan, Needles, SlackCleanup, Tally

FORGET_EVENT = "person_erased"
DELETE_EVENT = "inquiry_deleted"


@dataclass
class ErasureResult:
    kind: str  # "forget" or "delete"
    counts: dict[str, int]
    inquiry_ids: list[int]
    audit_event_id: int | None = None
    address_hash: str | None = None
    slack: list[SlackCleanup] = field(default_factory=list)
    storage: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "erased" if self.kind == "forget" else "deleted": bool(self.audit_event_id),
            "audit_event": self.audit_event_id,
            "inquiries": self.inquiry_ids,
            "counts": self.counts,
            "slack_cards": len(self.slack),
        }
        if self.address_hash:
            out["address_hmac"] = self.address_hash
        if self.storage is not None:
            out["storage"] = self.storage
        return out


@dataclass
class ForgetPreview:
    """What ``forget`` would erase, for the confirmation question."""

    address: str
    inquiries: list[dict[str, Any]]  # id, subject, status, received_at
    messages_elsewhere: int
    messages: int
    attachments: int
    mentions: int  # messages of other conversations that name them (the name is replaced)
    contact: bool

    @property
    def empty(self) -> bool:
        return not (self.inquiries or self.messages_elsewhere or self.contact or self.mentions)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address, "contact": self.contact, "inquiries": self.inquiries,
            "messages": self.messages, "messages_elsewhere": self.messages_elsewhere,
            "attachments": self.attachments, "mentions": self.mentions,
        }


def needles_for(found: footprint.Footprint) -> Needles:
    return Needles(found.address, found.names)


def preview_forget(session: Session, address: str, *, with_mentions: bool = True) -> ForgetPreview:
    """What would go. ``with_mentions`` also counts the other messages naming them, which reads
    every stored message: Slack's 3-second modal deadline asks without it."""
    found = footprint.find(session, address)
    inquiries = [
        {"id": i.id, "subject": i.subject, "status": i.status, "received_at": i.received_at.isoformat()}
        for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(found.inquiry_ids or [0])).order_by(Inquiry.id))
    ]
    message_ids = list(session.scalars(select(Message.id).where(Message.inquiry_id.in_(found.inquiry_ids or [0]))))
    message_ids += found.message_ids
    attachments = session.scalar(select(func.count(Attachment.id)).where(Attachment.message_id.in_(message_ids or [0]))) or 0
    # Messages that stay but name them (their own, about to go, are not counted twice).
    named = erasure.sweep(session, needles_for(found), dry_run=True).get("messages", set()) if with_mentions else set()
    return ForgetPreview(
        address=found.address, inquiries=inquiries, messages_elsewhere=len(found.message_ids),
        messages=len(message_ids), attachments=attachments,
        mentions=len(named - set(message_ids)), contact=found.contact_id is not None,
    )


def forget(session: Session, address: str, *, actor: str, scan: ByteScan | None = None,
           at: dt.datetime | None = None) -> ErasureResult:
    """Erase everything about the person at ``address`` (see ``footprint`` for who that is)."""
    at = at or utcnow()
    key = secret_key(session)
    found = footprint.find(session, address)
    needles = needles_for(found)
    if scan is not None and scan.needles != needles:
        scan = None  # their names changed since the scan (a message processed meanwhile)
    tally = Tally()
    slack = erasure.plan_cards(session, found.inquiry_ids, "erased", at=at)
    models = erasure.withdraw_models(session, found.inquiry_ids, found.message_ids)
    removed = erasure.delete_messages(session, found.message_ids, tally, key, at)
    erasure.erase_inquiries(session, found.inquiry_ids, tally, key, at)
    if found.contact_id is not None:
        erasure.delete_rows(session, Contact.__table__, [found.contact_id], tally, key, at)
    changed = erasure.sweep(session, needles, scan=scan)
    slack = erasure.merge_plans([*slack, *erasure.plan_rewrites(session, changed, removed)])
    counts = tally.as_dict()
    counts.update({f"redacted_{table}": len(ids) for table, ids in sorted(changed.items())})
    if models:
        counts["models_withdrawn"] = models
    if not tally.rows and not changed:
        return ErasureResult("forget", counts, [])
    digest = erasure.address_hash(key, found.address)
    event = erasure.audit(session, FORGET_EVENT, actor, {
        "address_hmac": digest, "counts": counts, "inquiries": found.inquiry_ids,
    })
    erasure.owe_slack(session, slack, f"erasure:{event.id}")
    return ErasureResult("forget", counts, found.inquiry_ids, event.id, digest, slack)


def preview_delete(session: Session, inquiry_id: int) -> dict[str, Any] | None:
    inquiry = session.get(Inquiry, inquiry_id)
    if inquiry is None:
        return None
    messages = session.scalar(select(func.count(Message.id)).where(Message.inquiry_id == inquiry_id)) or 0
    events = session.scalar(select(func.count(Event.id)).where(Event.inquiry_id == inquiry_id)) or 0
    return {
        "id": inquiry.id, "subject": inquiry.subject, "status": inquiry.status,
        "from": inquiry.contact.address if inquiry.contact else None,
        "received_at": inquiry.received_at.isoformat(), "messages": messages, "events": events,
        "card_in_slack": bool(inquiry.slack_ts),
    }


def delete_inquiry(session: Session, inquiry_id: int, *, actor: str, at: dt.datetime | None = None) -> ErasureResult:
    """Remove one inquiry and all it holds (junk loaded by mistake); its card goes from Slack.

    Its contact goes too when no other inquiry is theirs.
    """
    at = at or utcnow()
    if session.get(Inquiry, inquiry_id) is None:
        raise LookupError(f"there is no inquiry #{inquiry_id}")
    key = secret_key(session)
    tally = Tally()
    slack = erasure.plan_cards(session, [inquiry_id], "deleted", at=at)
    contacts = erasure.contacts_of(session, [inquiry_id])
    erasure.erase_inquiries(session, [inquiry_id], tally, key, at)
    erasure.delete_orphan_contacts(session, contacts, tally, key, at)
    counts = tally.as_dict()
    event = erasure.audit(session, DELETE_EVENT, actor, {"inquiry": inquiry_id, "counts": counts})
    erasure.owe_slack(session, slack, f"erasure:{event.id}")
    return ErasureResult("delete", counts, [inquiry_id], event.id, None, slack)
