"""What the command line, Slack and the worker call: the domain, then the files, then Slack.

Each runs the domain (``actions``, ``retention``) in its own transaction, then, once committed,
settles the SQLite file (``storage``) and hands the Slack plans to the Slack layer. The Slack
work is idempotent (a deleted line is deleted again harmlessly, a placeholder written twice is
the same placeholder).

Until the transactional outbox lands, the plans are enqueued as jobs after the commit; each
plan is also listed (by card) in the audit event, so a plan lost to a crash between the commit
and the enqueue can be found again. With the outbox, ``hand_to_slack`` becomes an
``outbox.owe`` per plan inside the domain's transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from intake.privacy import actions, config, erasure, footprint, retention, storage
from intake.privacy.actions import ErasureResult
from intake.privacy.erasure import SlackCleanup
from intake.privacy.retention import PurgeResult

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

SLACK_JOB = "slack.erasure_cleanup"


def hand_to_slack(rt: "Runtime", plans: list[SlackCleanup]) -> None:
    for plan in plans:
        rt.enqueue(SLACK_JOB, plan.as_args())


def forget_person(rt: "Runtime", address: str, actor: str) -> ErasureResult:
    """Erase a person; the database files keep nothing of them afterwards (SQLite: VACUUM)."""
    with rt.db.read_session() as session:
        found = footprint.find(session, address)
        scan = erasure.prescan(session, actions.needles_for(found))
    with rt.db.session() as session:
        result = actions.forget(session, address, actor=actor, scan=scan)
    if result.audit_event_id is not None:
        result.storage = storage.settle(rt.db, vacuum=True).as_dict()
        hand_to_slack(rt, result.slack)
    return result


def delete_inquiry(rt: "Runtime", inquiry_id: int, actor: str) -> ErasureResult:
    with rt.db.session() as session:
        result = actions.delete_inquiry(session, inquiry_id, actor=actor)
    result.storage = storage.settle(rt.db, vacuum=True).as_dict()
    hand_to_slack(rt, result.slack)
    return result


def apply_retention(rt: "Runtime", at: dt.datetime | None = None, *, dry_run: bool = False,
                    actor: str = "system") -> PurgeResult:
    """The retention policy as of ``at``. The daily run skips VACUUM (it would hold the write
    lock for the whole file every day); secure_delete already zeroes what it deletes."""
    policy = config.load(rt).retention
    result = retention.purge(rt, policy, at, dry_run=dry_run, actor=actor)
    if result.audit_event_id is not None:
        storage.settle(rt.db, vacuum=False)
        hand_to_slack(rt, result.slack)
    return result
