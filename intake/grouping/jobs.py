"""When groups are recomputed: every minute on the worker, and whenever `intake groups` runs.

A refresh of 10,000 open inquiries takes a few seconds (docs/benchmarks.md) and one with nothing
new is skipped after a single cheap query, so a periodic job keeps groups at most a minute
behind without recomputing once per arriving email (a flood of a thousand emails costs a few
refreshes, not a thousand). The refresh owes the cards that changed in its own transaction
(intake/grouping/store.py); the outbox delivers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intake.grouping import store
from intake.jobs import periodic

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

REFRESH_EVERY_SECONDS = 60


@periodic("groups.refresh", every_seconds=REFRESH_EVERY_SECONDS)
def refresh_job(rt: "Runtime") -> dict[str, int]:
    result = store.refresh(rt)
    return {"groups": result.groups, "created": result.created, "dissolved": result.dissolved}
