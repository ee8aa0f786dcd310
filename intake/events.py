"""Recording what happened: the audit trail, and through it everything owed to the outside.

Every fact the domain or a job records goes through :func:`record_event`: the ``Event`` row is
the audit line, and :func:`intake.outbox.dispatch.owe_for_event` adds, in the same transaction,
the deliveries that fact calls for (a card update, a thread line, an email). So a state change and
its side effects commit together or not at all, and no layer names another layer's work.
"""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy.orm import Session

from intake.models import Event


def record_event(session: Session, inquiry_id: int | None, actor: str, kind: str, /, **detail: Any) -> Event:
    """Add the event and owe what it calls for; returns the flushed ``Event`` (its id is set)."""
    return record_events(session, [(inquiry_id, actor, kind, detail)])[0]


def record_events(session: Session, facts: Sequence[tuple[int | None, str, str, dict[str, Any]]]) -> list[Event]:
    """:func:`record_event` for many facts at once, in order (a batch of processed messages):
    one INSERT for the events and one per kind of delivery for what they owe."""
    from intake.outbox.dispatch import owe_for_events

    # By key, not relationship: appending to inquiry.events would load the whole history.
    events = [Event(inquiry_id=inquiry_id, actor=actor, kind=kind, detail=detail or None)
              for inquiry_id, actor, kind, detail in facts]
    session.add_all(events)
    session.flush()
    owe_for_events(session, events)
    return events
