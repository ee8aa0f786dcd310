"""The transactional outbox: every side effect is a row written with the change that causes it.

- ``core``: ``owe`` / ``owe_card`` (inside the caller's transaction) and the ``@deliverer``
  registry, with ``Retry`` and ``GiveUp`` for deliverers to say what went wrong;
- ``dispatch``: the one table from recorded events to what they owe;
- ``worker``: claim with a lease, deliver, record; the poller that finds what is due.

See docs/architecture.md for the whole path and the guarantees.
"""

from intake.outbox.core import (
    SPECS,
    DeliverySpec,
    GiveUp,
    Retry,
    Ticket,
    Owing,
    deliverer,
    load_deliverers,
    owe,
    owe_card,
    owe_many,
)
from intake.outbox.worker import (
    Poller,
    deliver,
    deliver_many,
    due_ids,
    kick,
    lease_left,
    pending_summary,
    run_due,
    still_ours,
    still_ours_many,
)

__all__ = [
    "SPECS", "DeliverySpec", "GiveUp", "Owing", "Poller", "Retry", "Ticket", "deliver", "deliver_many", "deliverer",
    "due_ids", "kick", "lease_left", "load_deliverers", "owe", "owe_card", "owe_many", "pending_summary", "run_due",
    "still_ours", "still_ours_many",
]
