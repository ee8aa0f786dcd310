"""The IMAP ledger: which (mailbox, UIDVALIDITY, UID) are stored, and which are settled.

Plain database functions over ``ImapLedger``; the caller owns the transaction. A row is written
in the same transaction as the message's raw bytes (``record_stored``), so the ledger can never
claim a message the store does not hold, nor miss one it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from intake.models import ImapLedger, utcnow

STORED, DONE, SKIPPED = "stored", "done", "skipped"


@dataclass(frozen=True)
class ResumePoint:
    """Where a pass over one mailbox starts.

    ``watermark``: every UID up to it was seen under this UIDVALIDITY (stored, or refused and
    left in place). ``pending``: stored but not yet moved or flagged (a crash came in between).
    ``first_sight``: the ledger has never seen this mailbox. ``validity_changed``: it has, under
    another UIDVALIDITY only, so every UID it knows is meaningless now.
    """

    watermark: int
    pending: tuple[int, ...]
    first_sight: bool
    validity_changed: bool
    previous_validity: int | None = None


def resume_point(session: Session, mailbox: str, uidvalidity: int) -> ResumePoint:
    watermark = session.scalar(
        select(func.max(ImapLedger.uid)).where(
            ImapLedger.mailbox == mailbox, ImapLedger.uidvalidity == uidvalidity
        )
    )
    pending = session.scalars(
        select(ImapLedger.uid)
        .where(ImapLedger.mailbox == mailbox, ImapLedger.uidvalidity == uidvalidity,
               ImapLedger.state == STORED)
        .order_by(ImapLedger.uid)
    ).all()
    previous = None
    if watermark is None:
        previous = session.scalar(
            select(ImapLedger.uidvalidity).where(ImapLedger.mailbox == mailbox)
            .order_by(ImapLedger.id.desc()).limit(1)
        )
    return ResumePoint(
        watermark=watermark or 0,
        pending=tuple(pending),
        first_sight=watermark is None and previous is None,
        validity_changed=watermark is None and previous is not None,
        previous_validity=previous,
    )


def settled_uids(session: Session, mailbox: str, uidvalidity: int) -> set[int]:
    """UIDs that need nothing more (moved or flagged, or refused): a backfill skips them."""
    return set(session.scalars(
        select(ImapLedger.uid).where(
            ImapLedger.mailbox == mailbox, ImapLedger.uidvalidity == uidvalidity,
            ImapLedger.state.in_((DONE, SKIPPED)),
        )
    ))


def record(session: Session, mailbox: str, uidvalidity: int, entries: Sequence[tuple[int, int | None]],
           state: str) -> None:
    """Note ``(uid, message_id)`` pairs as stored (or skipped), in a few statements per batch.

    A re-read of a pending UID keeps its one row. Two readers on the same mailbox (a second
    ``intake imap`` started by mistake) clash on the unique (mailbox, UIDVALIDITY, UID): the
    loser's transaction fails and stores nothing.
    """
    if not entries:
        return
    where = (ImapLedger.mailbox == mailbox, ImapLedger.uidvalidity == uidvalidity)
    known = dict(session.execute(
        select(ImapLedger.uid, ImapLedger.state).where(*where, ImapLedger.uid.in_([u for u, _ in entries]))
    ).all())
    fresh = [dict(mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, message_id=message_id,
                  state=state, stored_at=utcnow()) for uid, message_id in entries if uid not in known]
    if fresh:
        session.execute(insert(ImapLedger), fresh)
    for uid, message_id in entries:
        if uid in known:
            values = {"message_id": message_id} if known[uid] == DONE else {"message_id": message_id, "state": state}
            session.execute(update(ImapLedger).where(*where, ImapLedger.uid == uid).values(**values))


def mark_done(session: Session, mailbox: str, uidvalidity: int, uids: Iterable[int]) -> None:
    """The messages were moved or flagged on the server: nothing is owed for them any more."""
    uids = list(uids)
    if not uids:
        return
    session.execute(
        update(ImapLedger)
        .where(ImapLedger.mailbox == mailbox, ImapLedger.uidvalidity == uidvalidity,
               ImapLedger.uid.in_(uids), ImapLedger.state == STORED)
        .values(state=DONE, done_at=utcnow())
    )
