"""What each recorded fact owes the outside world: the event → delivery table.

The domain and the outbound layer only record events (intake.events.record_event); this table
is the one place that says which Slack posts and emails follow from them. Reading it top to
bottom is reading the pipeline.

| event kind | owes |
|---|---|
| ``received`` | the card; the acknowledgment decision for the message |
| ``unparseable`` | the card |
| ``follow_up`` | the card; the message as a line in the card's thread |
| a staff action (claimed, assigned, reclassified, closed, reopened, marked_spam, marked_not_spam, note) | the card; a "who did what" line |
| ``reply_queued`` / ``ack_queued`` | the card (reply only); the email itself |
| ``reply_sent`` | the card; a line quoting what was sent |
| ``ack_sent``, ``ack_suppressed`` | the card (shown there, no line: one post fewer per inquiry) |
| ``cap_hit``, ``smtp_delayed`` | a line |
| ``send_failed`` | the card; a line |
| ``sender_unverified`` (a follow-up failing sender authentication) | the card (its warning); a line |
| ``delivery_failed`` (a Slack post given up) | nothing more in Slack, which is what failed |
| ``split_from_group`` (issue 16) | the card; a line (the group's own card is owed by intake.grouping) |
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy.orm import Session

from intake.models import Event
from intake.outbox.core import Owing, card_owing, owe_many

CARD = "card"
LINE = "line"
ACKNOWLEDGE = "acknowledge"
SEND = "send"

STAFF_ACTIONS = ("claimed", "assigned", "reclassified", "closed", "reopened", "marked_spam",
                 "marked_not_spam", "note", "waiting")

OWED: dict[str, tuple[str, ...]] = {
    "received": (CARD, ACKNOWLEDGE),
    "unparseable": (CARD,),
    "follow_up": (CARD, LINE),
    **{kind: (CARD, LINE) for kind in STAFF_ACTIONS},
    "reply_queued": (CARD, SEND),
    "ack_queued": (SEND,),
    "reply_sent": (CARD, LINE),
    "ack_sent": (CARD,),
    "ack_suppressed": (CARD,),
    "cap_hit": (LINE,),
    "smtp_delayed": (LINE,),
    "send_failed": (CARD, LINE),
    "split_from_group": (CARD, LINE),  # issue 16: staff took it out of a group
}


def owe_for_event(session: Session, event: Event) -> None:
    """Owe, in the event's own transaction, every delivery its kind calls for."""
    owe_for_events(session, [event])


def owe_for_events(session: Session, events: Sequence[Event]) -> None:
    """Owe what each event calls for, in one go (a batch of processed messages records many)."""
    owings: list[Owing] = []
    for event in events:
        detail = event.detail or {}
        for what in OWED.get(event.kind, ()):
            if what == CARD and event.inquiry_id is not None:
                owings.append(card_owing(event.inquiry_id))
            elif what == LINE and event.inquiry_id is not None:
                if event.kind == "follow_up":
                    # The message itself is the line (its text, its sender); reopening shows on it.
                    owings.append(Owing("slack.message_line", f"line:message:{detail['message_id']}",
                                        event.inquiry_id, {"message_id": detail["message_id"],
                                                           "reopened": bool(detail.get("reopened"))}))
                else:
                    owings.append(Owing("slack.event_line", f"line:event:{event.id}", event.inquiry_id,
                                        {"event_id": event.id}))
            elif what == ACKNOWLEDGE:
                owings.append(Owing("email.acknowledge", f"ack:{detail['message_id']}", event.inquiry_id,
                                    {"message_id": detail["message_id"]}))
            elif what == SEND:
                owings.append(Owing("email.send", f"send:{detail['message_id']}", event.inquiry_id,
                                    {"message_id": detail["message_id"]}))
    if owings:
        owe_many(session, owings)
