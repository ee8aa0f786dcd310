"""Answer all: one staff text sent as one individual reply to every member of a group.

Each reply is an ordinary staff reply (``outbound.queue_reply`` and its ``reply_queued`` event,
which owes the email and the card update): addressed to that person alone, threaded onto their
own conversation (their subject, In-Reply-To, References), sent by the outbox, counted by the
per-address caps at send time and recorded on their own card. All the replies are queued in one
transaction, so a crash queues all of them or none; a per-request key makes a repeated
submission queue nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake.events import record_event
from intake.grouping.store import groups, owe_group_card
from intake.inquiries.lifecycle import touch_for_reply
from intake.models import InquiryGroup, Message, utcnow
from intake.outbound import ReplyError, queue_reply


class GroupGone(LookupError):
    """The group was dissolved (or never existed) before the answer was sent."""


@dataclass
class GroupAnswer:
    group_id: int
    queued: list[tuple[int, int]] = field(default_factory=list)  # (inquiry id, outbound message id)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (inquiry id, why)
    repeated: bool = False  # this request had already been queued


def answer_group(session: Session, group_id: int, body: str, author: str, *, request_key: str,
                 settings) -> GroupAnswer:
    """Queue one reply per current member of the group, owing each email and card (the caller
    commits)."""
    found = groups(session, ids=[group_id])
    if not found:
        raise GroupGone(f"group {group_id} no longer exists: its inquiries were answered or closed")
    result = GroupAnswer(group_id)
    keys = {iid: f"group-answer:{group_id}:{request_key}:{iid}" for iid in found[0].inquiries}
    done = dict(session.execute(select(Message.dedupe_key, Message.id).where(Message.dedupe_key.in_(list(keys.values())))).all())
    if done:
        result.repeated = True
        result.queued = [(iid, done[key]) for iid, key in keys.items() if key in done]
        return result
    for inquiry_id, key in keys.items():
        try:
            with session.begin_nested():  # one unusable address must not stop the others
                touch_for_reply(session, inquiry_id, None)
                message = queue_reply(session, inquiry_id, body, author, settings=settings, dedupe_key=key)
                record_event(session, inquiry_id, author, "reply_queued", message_id=message.id)
                result.queued.append((inquiry_id, message.id))
        except (ReplyError, IntegrityError) as exc:
            result.refused.append((inquiry_id, str(exc.orig if isinstance(exc, IntegrityError) else exc)))
    group = session.get(InquiryGroup, group_id)
    if group is not None and result.queued:
        group.answered_by, group.answered_at = author, utcnow()
        owe_group_card(session, group_id)
    return result
