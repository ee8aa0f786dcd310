"""The states a stored row can be in, as plain tuples.

They live apart from ``intake.models`` so that a command can offer them as choices (`intake list
--status`) without importing SQLAlchemy, which costs most of a fast command's start-up
(docs/benchmarks.md, "CLI start-up"). ``intake.models`` re-exports them.
"""

from __future__ import annotations

# Inquiry lifecycle. `new` until a person touches it; `waiting` once we replied and await them.
INQUIRY_STATUSES = ("new", "open", "waiting", "closed", "spam")
# Parse outcome of an inbound message. `pending` until the processing job has run.
PARSE_STATUSES = ("pending", "parsed", "unparseable")
# Processing state of a message row; the sweeper re-enqueues rows stuck in a non-final state.
#   inbound:  received -> processed
#   outbound: queued -> sending -> sent | failed   (a fixed Message-ID makes resends idempotent)
MESSAGE_STATES = ("received", "processed", "queued", "sending", "sent", "failed", "suppressed")
DIRECTIONS = ("inbound", "outbound", "internal")
