"""The ``[slack]`` table of INTAKE_CONFIG, parsed and checked once (``Settings.slack``).

Credentials and the triage channel come from the environment (``SLACK_*``, see ``config.py``);
this table holds what an operator tunes: routing, pacing, who may act, the Web API client.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

from intake.config import ConfigError, Table


@dataclass(frozen=True)
class SlackSettings:
    channels: Mapping[str, str]  # category -> channel id; SLACK_TRIAGE_CHANNEL for the rest
    allowed_usergroup: str | None  # members may act besides the triage channel's members
    email_channels: frozenset[str]  # where Slack's email forwarding posts emails
    burst_window: dt.timedelta  # several emails from one sender within this: one card
    post_interval_seconds: float  # Slack's pace: about one message a second a channel...
    post_burst: int  # ...with short bursts allowed
    membership_ttl_seconds: float  # how long "who may act" is cached
    timeout_seconds: int  # one Web API call
    rate_limit_retries: int  # 429s the client waits out before the outbox retries

    def channel_for(self, category: str | None, triage_channel: str | None) -> str | None:
        """The category's own channel, else the triage channel."""
        return self.channels.get(category or "") or triage_channel

    @classmethod
    def from_table(cls, given: Any) -> "SlackSettings":
        table = Table("slack", given)
        channels = table.mapping("channels")
        if not all(isinstance(v, str) for v in channels.values()):
            raise ConfigError('[slack] channels maps categories to channel ids, like { press = "C0PRESS" }')
        email_channels = table.values.get("email_channels")
        # One channel may be written as a plain string, and the older singular key still counts.
        email = {email_channels} if isinstance(email_channels, str) else set(table.texts("email_channels"))
        if table.text("email_channel"):
            email.add(table.text("email_channel"))
        return cls(
            channels={str(k): v for k, v in channels.items() if v},
            allowed_usergroup=table.text("allowed_usergroup") or None,
            email_channels=frozenset(email),
            burst_window=dt.timedelta(minutes=table.number("burst_minutes")),
            post_interval_seconds=table.number("post_interval_seconds"),
            post_burst=table.whole("post_burst", minimum=1),
            membership_ttl_seconds=table.number("membership_ttl_seconds"),
            timeout_seconds=table.whole("timeout_seconds", minimum=1),
            rate_limit_retries=table.whole("rate_limit_retries"),
        )
