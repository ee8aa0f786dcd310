"""When groups are recomputed: every minute on the worker, and whenever `intake groups` runs.

A refresh of 10,000 open inquiries takes a few seconds (docs/benchmarks.md) and one with nothing
new is skipped after a single cheap query, so a periodic job keeps groups at most a minute
behind without recomputing once per arriving email (a flood of a thousand emails costs a few
refreshes, not a thousand).

After writing, the job asks the Slack layer for the cards that changed: the group cards and the
triage cards whose "in group G" line changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intake.grouping import store
from intake.jobs import job, periodic

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

REFRESH_EVERY_SECONDS = 60


def show_changes(rt: "Runtime", result: store.RefreshResult) -> None:
    """Card work after a change in groups (to become outbox deliveries owed in the same
    transaction as the change once intake.outbox lands)."""
    for group_id in sorted(result.changed_groups):
        rt.enqueue("slack.sync_group_card", group_id)
    for inquiry_id in sorted(result.changed_cards):
        rt.enqueue("slack.sync_card", inquiry_id)


@periodic("groups.refresh", every_seconds=REFRESH_EVERY_SECONDS)
def refresh_job(rt: "Runtime") -> dict[str, int]:
    result = store.refresh(rt)
    show_changes(rt, result)
    return {"groups": result.groups, "created": result.created, "dissolved": result.dissolved}


@job("groups.refresh_now")
def refresh_now(rt: "Runtime") -> dict[str, int]:
    """The same, on demand (after a staff action that changes who may be grouped)."""
    return refresh_job(rt)
