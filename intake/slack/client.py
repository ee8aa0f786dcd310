"""The Slack Web API client: one per process, with retries Slack's SDK leaves off by default.

``slack_sdk``'s ``WebClient`` only retries connection errors out of the box. We add its own
``RateLimitErrorRetryHandler`` (sleeps for the ``Retry-After`` Slack sends with a 429) and
``ServerErrorRetryHandler`` rather than writing a retry loop: they sit below every call, listeners
and jobs alike. A job whose call still fails raises, and the queue retries the whole job, which is
safe because jobs record the card's ts and update instead of posting twice.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from intake.config import Settings

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

CLIENT_TIMEOUT_SECONDS = 10


def build_client(settings: Settings, token: str | None = None) -> WebClient:
    """A WebClient for ``settings.slack_api_url`` (tests point it at tests/fakeslack.py)."""
    section = settings.section("slack")
    base_url = settings.slack_api_url
    if not base_url.endswith("/"):
        base_url += "/"  # WebClient joins method names onto it; without the slash "api" is lost
    return WebClient(
        token=token or settings.slack_bot_token,
        base_url=base_url,
        timeout=int(section.get("timeout_seconds", CLIENT_TIMEOUT_SECONDS)),
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=int(section.get("rate_limit_retries", 3))),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def slack_client(rt: "Runtime") -> WebClient:
    """The process's client, built once (its connection settings never change at run time)."""
    return rt.service("slack.client", lambda r: build_client(r.settings))


class ChannelThrottle:
    """Paces posts to one channel: Slack allows about one message a second a channel, "with short
    bursts of more than one allowed". A token bucket per channel (``burst`` posts at once, then
    one every ``interval`` seconds) keeps a new card from waiting behind the thread line that was
    posted a moment before, while a flood is still paced at Slack's rate.

    Per process only; a second worker relies on Slack's 429 and the retry handler.
    """

    def __init__(self, interval: float, burst: int = 3) -> None:
        self.interval = interval
        self.burst = max(1, burst)
        self._next: dict[str, float] = {}  # when the bucket would be full again, per channel
        self._lock = threading.Lock()

    def wait(self, channel: str) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            # The bucket is modelled as the time its last reserved token frees up ("theoretical
            # arrival time"): a post may go when that lies no more than burst-1 intervals ahead.
            tat = max(now, self._next.get(channel, now))
            slot = max(now, tat - (self.burst - 1) * self.interval)
            self._next[channel] = tat + self.interval
        if slot > now:
            time.sleep(slot - now)


def channel_throttle(rt: "Runtime") -> ChannelThrottle:
    section = rt.settings.section("slack")
    interval = float(section.get("post_interval_seconds", 1.0))
    burst = int(section.get("post_burst", 3))
    return rt.service("slack.throttle", lambda r: ChannelThrottle(interval, burst))
