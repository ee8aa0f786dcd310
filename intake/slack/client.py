"""The Slack Web API clients: one per process, with the retries that are safe for what it does.

``slack_sdk``'s ``WebClient`` only retries connection errors out of the box. Listeners (modals,
ephemeral notes) get its ``ConnectionErrorRetryHandler``, ``RateLimitErrorRetryHandler`` and
``ServerErrorRetryHandler``: showing a modal twice is harmless. The outbox's client
(:func:`slack_client`) retries only a 429, which Slack answers *instead of* acting. A 5xx or a
dropped connection may come after Slack already posted, so retrying it blindly posts a second
card; the outbox retries those itself, after looking for the first post by its metadata
(intake/slack/deliveries.py).
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

def build_client(settings: Settings, token: str | None = None, *, idempotent_only: bool = False) -> WebClient:
    """A WebClient for ``settings.slack_api_url`` (tests point it at tests/fakeslack.py).

    ``idempotent_only``: retry nothing Slack may already have acted on (the outbox's client).
    """
    options = settings.slack
    base_url = settings.slack_api_url
    if not base_url.endswith("/"):
        base_url += "/"  # WebClient joins method names onto it; without the slash "api" is lost
    handlers = [RateLimitErrorRetryHandler(max_retry_count=options.rate_limit_retries)]
    if not idempotent_only:
        handlers += [ConnectionErrorRetryHandler(max_retry_count=2), ServerErrorRetryHandler(max_retry_count=2)]
    return WebClient(
        token=token or settings.slack_bot_token,
        base_url=base_url,
        timeout=options.timeout_seconds,
        retry_handlers=handlers,
    )


def slack_client(rt: "Runtime") -> WebClient:
    """The outbox's client, built once per process: it retries only what Slack refused (429)."""
    return rt.service("slack.delivery_client", lambda r: build_client(r.settings, idempotent_only=True))


def listener_client(rt: "Runtime") -> WebClient:
    """The Bolt app's client: listeners' calls (modals, ephemeral notes) are safe to repeat."""
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
    options = rt.settings.slack
    return rt.service("slack.throttle",
                      lambda r: ChannelThrottle(options.post_interval_seconds, options.post_burst))
