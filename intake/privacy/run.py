"""What the command line, Slack and the worker call: the domain in one transaction, then the files.

Each runs the domain (``actions``, ``retention``), whose transaction also owes what Slack must
show afterwards (outbox deliveries, committed with the erasure or not at all), then settles the
SQLite file (``storage``) so the erased bytes leave it too.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from intake.privacy import actions, config, erasure, footprint, retention, storage
from intake.privacy.actions import ErasureResult
from intake.privacy.retention import PurgeResult

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime


def own_address(rt: "Runtime") -> str:
    """The address intake's mail comes from (never a person to forget)."""
    from intake.outbound.options import load_options

    return load_options(rt.settings).from_address


def forget_person(rt: "Runtime", address: str, actor: str) -> ErasureResult:
    """Erase a person; the database files keep nothing of them afterwards (SQLite: VACUUM).

    The stored mail is scanned for their address once before the write transaction, so the
    transaction (on SQLite: the one write lock) re-reads only what matched and what came since.
    """
    address = footprint.normalized(address, own_address=own_address(rt))
    with rt.db.read_session() as session:
        found = footprint.find(session, address)
        scan = erasure.prescan(session, actions.needles_for(found))
    with rt.db.session() as session:
        result = actions.forget(session, address, actor=actor, scan=scan)
    if result.audit_event_id is not None:
        result.storage = storage.settle(rt.db, vacuum=True).as_dict()
    return result


def delete_inquiry(rt: "Runtime", inquiry_id: int, actor: str) -> ErasureResult:
    with rt.db.session() as session:
        result = actions.delete_inquiry(session, inquiry_id, actor=actor)
    result.storage = storage.settle(rt.db, vacuum=True).as_dict()
    return result


def apply_retention(rt: "Runtime", at: dt.datetime | None = None, *, dry_run: bool = False,
                    actor: str = "system") -> PurgeResult:
    """The retention policy as of ``at``. The daily run skips VACUUM (it would hold the write
    lock for the whole file every day); secure_delete already zeroes what it deletes."""
    policy = config.load(rt).retention
    result = retention.purge(rt, policy, at, dry_run=dry_run, actor=actor)
    if result.audit_event_id is not None:
        storage.settle(rt.db, vacuum=False)
    return result
