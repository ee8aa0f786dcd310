"""Retention: old spam and automated mail deleted, old closed inquiries redacted.

The policy (``[retention]``, see ``config``) as of a moment ``at``:

- **deleted**, with everything they hold: inquiries with status ``spam``, and closed inquiries in
  ``delete_categories``, whose last message is older than ``delete_after_days``;
- **redacted** (``erasure.redact_inquiries``): closed inquiries closed longer ago than
  ``redact_closed_after_days`` and not redacted yet.

An open inquiry (new, open, waiting) is never touched, whatever its age or category: only the
statuses ``spam`` and ``closed`` are ever selected. Work goes in batches, one transaction each,
so a first run over years of mail never holds the database for long; a batch that fails leaves
the rest for the next run. Every run that changed something leaves one audit event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from intake.keys import secret_key
from intake.models import Inquiry, utcnow
from intake.privacy import erasure
from intake.privacy.config import RetentionPolicy
from intake.privacy.erasure import SlackCleanup, Tally

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

PURGE_EVENT = "retention_applied"
BATCH = 200


@dataclass
class Due:
    delete: list[int]
    redact: list[int]


def due(session: Session, policy: RetentionPolicy, at: dt.datetime) -> Due:
    """The inquiries the policy removes or redacts as of ``at`` (never an open one)."""
    delete: list[int] = []
    if policy.delete_after is not None:
        cutoff = at - policy.delete_after
        quiet = or_(
            Inquiry.status == "spam",
            and_(Inquiry.status == "closed", Inquiry.category.in_(sorted(policy.delete_categories))),
        )
        delete = list(session.scalars(
            select(Inquiry.id).where(quiet, Inquiry.last_message_at < cutoff).order_by(Inquiry.id)
        ))
    redact: list[int] = []
    if policy.redact_closed_after is not None:
        cutoff = at - policy.redact_closed_after
        going = set(delete)
        redact = [i for i in session.scalars(
            select(Inquiry.id).where(
                Inquiry.status == "closed", Inquiry.redacted_at.is_(None),
                Inquiry.closed_at.is_not(None), Inquiry.closed_at < cutoff, Inquiry.last_message_at < cutoff,
            ).order_by(Inquiry.id)
        ) if i not in going]
    return Due(delete, redact)


@dataclass
class PurgeResult:
    deleted: int = 0
    redacted: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    slack: list[SlackCleanup] = field(default_factory=list)
    audit_event_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "redacted": self.redacted}


def apply_batch(session: Session, delete: list[int], redact: list[int], at: dt.datetime, tally: Tally) -> list[SlackCleanup]:
    """One batch of the policy in the caller's transaction, with what Slack must show owed in it."""
    if not (delete or redact):
        return []
    key = secret_key(session)
    slack = erasure.plan_cards(session, delete, "deleted", at=at)
    slack += erasure.plan_cards(session, redact, "redacted", at=at)
    contacts = erasure.contacts_of(session, delete)
    erasure.erase_inquiries(session, delete, tally, key, at)
    erasure.delete_orphan_contacts(session, contacts, tally, key, at)
    erasure.redact_inquiries(session, redact, at, tally, key)
    # Keyed by the batch's first inquiry: a batch that is rolled back and run again owes once.
    erasure.owe_slack(session, slack, f"retention:{min(delete + redact)}")
    return slack


def purge(rt: "Runtime", policy: RetentionPolicy, at: dt.datetime | None = None, *,
          dry_run: bool = False, actor: str = "system") -> PurgeResult:
    """Apply the policy as of ``at`` (default now), batch by batch."""
    at = at or utcnow()
    with rt.db.read_session() as session:
        found = due(session, policy, at)
    result = PurgeResult(len(found.delete), len(found.redact))
    if dry_run or not (found.delete or found.redact):
        return result
    tally = Tally()
    delete, redact = found.delete, found.redact
    while delete or redact:
        batch_delete, delete = delete[:BATCH], delete[BATCH:]
        batch_redact, redact = redact[:max(0, BATCH - len(batch_delete))], redact[max(0, BATCH - len(batch_delete)):]
        with rt.db.session() as session:
            # Re-checked inside the transaction: a follow-up may have reopened one meanwhile.
            still = due(session, policy, at)
            still_delete, still_redact = set(still.delete), set(still.redact)
            result.slack += apply_batch(
                session,
                [i for i in batch_delete if i in still_delete],
                [i for i in batch_redact if i in still_redact],
                at, tally,
            )
    result.counts = tally.as_dict()
    result.deleted = tally.rows["inquiries"]
    result.redacted = tally.rows["inquiries_redacted"]
    with rt.db.session() as session:
        result.audit_event_id = erasure.audit(session, PURGE_EVENT, actor, {
            "at": at.isoformat(), "deleted": result.deleted, "redacted": result.redacted, "counts": result.counts,
        }).id
    return result
