"""The ``[outbox]`` table of INTAKE_CONFIG, parsed and checked once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from intake.config import Table


@dataclass(frozen=True)
class OutboxSettings:
    poll_seconds: float
    kick_grace: dt.timedelta
    first_retry_seconds: float
    max_retry_seconds: float
    lease: dt.timedelta
    slack_deadline: dt.timedelta
    email_deadline: dt.timedelta
    email_delayed_after: dt.timedelta

    @classmethod
    def from_table(cls, given: Any) -> "OutboxSettings":
        table = Table("outbox", given)
        number = table.number
        return cls(
            poll_seconds=max(0.05, number("poll_seconds")),
            kick_grace=dt.timedelta(seconds=number("kick_grace_seconds")),
            first_retry_seconds=number("first_retry_seconds"),
            max_retry_seconds=max(number("max_retry_seconds"), number("first_retry_seconds")),
            lease=dt.timedelta(seconds=max(1.0, number("lease_seconds"))),
            slack_deadline=dt.timedelta(hours=number("slack_deadline_hours")),
            email_deadline=dt.timedelta(hours=number("email_deadline_hours")),
            email_delayed_after=dt.timedelta(minutes=number("email_delayed_after_minutes")),
        )
