"""The inquiry lifecycle: statuses, the one table of allowed moves, and every staff action.

Each action records an audited Event with the actor's Slack user ID through
:func:`intake.events.record_event`, which also owes the card update and the thread line; no
action here knows that Slack exists. Rules that other layers used to repeat live here once:
which follow-up reopens an inquiry, what a staff reply does to the status.

Staff actions are idempotent against double clicks and two people clicking at once: a card's
buttons carry the inquiry's ``version`` as drawn, and an action given a version first bumps it
with one conditional UPDATE. Of two clicks on the same drawing only the first finds its version;
the second is refused as stale and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import uuid
from typing import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from intake.events import record_event
from intake.inquiries.common import QUIET_CATEGORIES, SYSTEM, InquiryNotFound, InvalidAction, get_inquiry
from intake.models import Event, Inquiry, Message, utcnow
from intake.sla import clock as sla_clock


class Status(str, enum.Enum):
    NEW = "new"  # nobody has touched it yet
    OPEN = "open"  # someone is on it
    WAITING = "waiting"  # we answered; the applicant's move
    CLOSED = "closed"
    SPAM = "spam"


# Where each status may go. A move to the same status is always allowed (a no-op).
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.OPEN, Status.WAITING, Status.CLOSED, Status.SPAM}),
    Status.OPEN: frozenset({Status.WAITING, Status.CLOSED, Status.SPAM}),
    Status.WAITING: frozenset({Status.OPEN, Status.CLOSED, Status.SPAM}),
    Status.CLOSED: frozenset({Status.OPEN, Status.SPAM}),
    Status.SPAM: frozenset({Status.NEW, Status.OPEN, Status.CLOSED}),
}


class StaleCard(InvalidAction):
    """The card a person clicked was drawn before the inquiry last changed."""


def move(inquiry: Inquiry, to: Status, *, now: dt.datetime | None = None) -> bool:
    """Set the status if the table allows it; returns whether it changed."""
    current = Status(inquiry.status)
    if current == to:
        return False
    if to not in ALLOWED[current]:
        raise InvalidAction(f"inquiry #{inquiry.id} is {current.value}; it cannot become {to.value}")
    inquiry.status = to.value
    if to == Status.CLOSED:
        inquiry.closed_at = now or utcnow()
    elif current == Status.CLOSED:
        inquiry.closed_at = None
    if to.value not in sla_clock.RUNNING:
        sla_clock.stop(inquiry)  # waiting pauses the response clock; closed and spam stop it
    return True


def _staff_touch(session: Session, inquiry_id: int, version: int | None) -> Inquiry:
    """Bump the inquiry's version (checking the card's, when given) and load it fresh.

    One conditional UPDATE, first in the transaction: on PostgreSQL it takes the row lock, so two
    concurrent clicks serialize and the second sees the version the first wrote.
    """
    stmt = update(Inquiry).where(Inquiry.id == inquiry_id)
    if version is not None:
        stmt = stmt.where(Inquiry.version == version)
    changed = session.execute(
        stmt.values(version=Inquiry.version + 1).execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        get_inquiry(session, inquiry_id)  # raises InquiryNotFound when it does not exist
        raise StaleCard(f"inquiry #{inquiry_id} changed since that card was drawn; nothing was done")
    inquiry = session.get(Inquiry, inquiry_id, populate_existing=True)
    assert inquiry is not None
    return inquiry


def touch_for_reply(session: Session, inquiry_id: int, version: int | None) -> Inquiry:
    """A reply is a staff action too: it bumps the version (checking the card's, when given)."""
    return _staff_touch(session, inquiry_id, version)


# ---- what the pipeline and the outbound layer report ---------------------------------------


def follow_up(inquiry: Inquiry, *, automated: bool, now: dt.datetime | None = None) -> bool:
    """A message that continues the inquiry: a person writing reopens a closed or waiting
    inquiry; an auto-reply (out of office, bounce) never does. The one home of that rule.
    Returns whether it reopened a closed inquiry (the ``follow_up`` event says so)."""
    now = now or utcnow()
    inquiry.last_message_at = now
    reopened = False
    if not automated and inquiry.status in (Status.CLOSED.value, Status.WAITING.value):
        reopened = inquiry.status == Status.CLOSED.value
        move(inquiry, Status.OPEN, now=now)
    return reopened


def follow_up_detail(message_id: int, reopened: bool) -> dict:
    """The ``follow_up`` event's detail."""
    return {"message_id": message_id, **({"reopened": True} if reopened else {})}


def on_follow_up(session: Session, inquiry: Inquiry, message_id: int, *, automated: bool,
                 now: dt.datetime | None = None) -> Event:
    """Apply :func:`follow_up` and record its ``follow_up`` event."""
    reopened = follow_up(inquiry, automated=automated, now=now)
    return record_event(session, inquiry.id, SYSTEM, "follow_up", **follow_up_detail(message_id, reopened))


def on_reply_sent(inquiry: Inquiry, now: dt.datetime) -> None:
    """A staff email reply went out: the applicant has the move. (The response target was met
    when staff wrote it: intake.sla.clock.responded, called as the reply is queued.)"""
    if inquiry.status in (Status.NEW.value, Status.OPEN.value):
        move(inquiry, Status.WAITING, now=now)


# ---- staff actions -------------------------------------------------------------------------


def claim(session: Session, inquiry_id: int, actor: str, *, version: int | None = None) -> Event:
    inquiry = _staff_touch(session, inquiry_id, version)
    previous = inquiry.assignee
    inquiry.assignee = actor
    if inquiry.status == Status.NEW.value:
        move(inquiry, Status.OPEN)
    return record_event(session, inquiry.id, actor, "claimed", previous=previous)


def assign(session: Session, inquiry_id: int, assignee: str | None, actor: str, *,
           version: int | None = None) -> Event:
    inquiry = _staff_touch(session, inquiry_id, version)
    previous = inquiry.assignee
    inquiry.assignee = assignee or None
    if assignee and inquiry.status == Status.NEW.value:
        move(inquiry, Status.OPEN)
    return record_event(session, inquiry.id, actor, "assigned", assignee=assignee, previous=previous)


def _staff_label(session: Session, inquiry: Inquiry, category: str, actor: str) -> None:
    """A person's label: the labelled row `intake train` learns from, and the inquiry's category."""
    from intake.classify import record_staff_label

    record_staff_label(session, inquiry.id, category, actor)
    inquiry.category = category
    inquiry.confidence = 1.0
    inquiry.needs_review = False


def reclassify(session: Session, inquiry_id: int, category: str, actor: str, *,
               categories: Iterable[str] | None = None, version: int | None = None) -> Event:
    """A staff correction: the new label trains the classifier at the next `intake train`."""
    if categories is not None and category not in set(categories):
        raise InvalidAction(f"unknown category {category!r}")
    inquiry = _staff_touch(session, inquiry_id, version)
    previous = inquiry.category
    _staff_label(session, inquiry, category, actor)
    if category == "spam":
        move(inquiry, Status.SPAM)
    elif inquiry.status == Status.SPAM.value:
        move(inquiry, Status.OPEN)
    return record_event(session, inquiry.id, actor, "reclassified", category=category, previous=previous)


def close(session: Session, inquiry_id: int, actor: str, *, version: int | None = None) -> Event:
    inquiry = _staff_touch(session, inquiry_id, version)
    move(inquiry, Status.CLOSED)
    return record_event(session, inquiry.id, actor, "closed")


def reopen(session: Session, inquiry_id: int, actor: str, *, version: int | None = None) -> Event:
    inquiry = _staff_touch(session, inquiry_id, version)
    move(inquiry, Status.OPEN)
    return record_event(session, inquiry.id, actor, "reopened")


def wait_on_applicant(session: Session, inquiry_id: int, actor: str, *, version: int | None = None) -> Event:
    """Waiting on the applicant (the card's button): the response clock pauses until they write."""
    inquiry = _staff_touch(session, inquiry_id, version)
    if inquiry.status not in sla_clock.RUNNING:
        raise InvalidAction(f"inquiry #{inquiry_id} is {inquiry.status}, not open")
    move(inquiry, Status.WAITING)
    return record_event(session, inquiry.id, actor, "waiting")


def mark_spam(session: Session, inquiry_id: int, actor: str, *, version: int | None = None) -> Event:
    inquiry = _staff_touch(session, inquiry_id, version)
    previous = inquiry.category
    _staff_label(session, inquiry, "spam", actor)
    move(inquiry, Status.SPAM)
    return record_event(session, inquiry.id, actor, "marked_spam", previous=previous)


def mark_not_spam(session: Session, inquiry_id: int, actor: str, *, category: str = "general",
                  version: int | None = None) -> Event:
    """Restore a false positive (spam or automated) to the queue, as a staff label."""
    inquiry = _staff_touch(session, inquiry_id, version)
    previous = inquiry.category
    # The last label that was neither spam nor automated, or the given fallback.
    restored = next(
        (c.category for c in reversed(inquiry.classifications) if c.category not in QUIET_CATEGORIES),
        category,
    )
    _staff_label(session, inquiry, restored, actor)
    target = Status.NEW if inquiry.assignee is None else Status.OPEN
    if inquiry.status != target.value:
        # Straight back to the queue from wherever the filter put it (spam, or closed as automated).
        inquiry.status = target.value
        inquiry.closed_at = None
    inquiry.automated = False
    return record_event(session, inquiry.id, actor, "marked_not_spam", category=restored, previous=previous)


def add_note(session: Session, inquiry_id: int, text: str, actor: str, *, version: int | None = None) -> Event:
    """An internal note: kept with the inquiry, never sent to the applicant."""
    text = (text or "").strip()
    if not text:
        raise InvalidAction("a note needs some text")
    inquiry = _staff_touch(session, inquiry_id, version)
    raw = text.encode("utf-8")
    note = Message(
        inquiry_id=inquiry.id,
        direction="internal",
        kind="note",
        source="slack",
        dedupe_key=f"note:{uuid.uuid4().hex}",
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        text_body=text,
        latest_reply=text,
        parse_status="parsed",
        state="processed",
        author=actor,
        processed_at=utcnow(),
    )
    session.add(note)
    session.flush()
    return record_event(session, inquiry.id, actor, "note", message_id=note.id)


__all__ = [
    "ALLOWED", "InquiryNotFound", "InvalidAction", "StaleCard", "Status", "add_note", "assign",
    "claim", "close", "follow_up", "follow_up_detail", "mark_not_spam", "mark_spam", "move", "on_follow_up",
    "on_reply_sent", "reclassify", "reopen", "touch_for_reply", "wait_on_applicant",
]
