"""Who may act on inquiries: members of the triage channel, or of a configured user group.

Membership is asked of Slack (``conversations.members``, ``usergroups.users.list``) and cached
for a short while, so a burst of clicks costs one API call and a person removed from the channel
loses access within a minute. When Slack cannot answer, the answer is "no" (never run open).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 60.0
REFUSAL = ("Only members of the triage channel can act on inquiries. "
           "Ask someone to invite you to the channel; nothing was changed.")


class Authorizer:
    def __init__(self, client: WebClient, channel: str | None, usergroup: str | None,
                 ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.channel = channel
        self.usergroup = usergroup
        self.ttl = ttl
        self._cache: tuple[float, frozenset[str]] | None = None
        self._lock = threading.Lock()

    def allowed_users(self) -> frozenset[str]:
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < self.ttl:
                return self._cache[1]
        users: set[str] = set()
        try:
            if self.channel:
                cursor = None
                while True:
                    resp = self.client.conversations_members(channel=self.channel, cursor=cursor, limit=1000)
                    users.update(resp.get("members") or [])
                    cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                    if not cursor:
                        break
            if self.usergroup:
                resp = self.client.usergroups_users_list(usergroup=self.usergroup)
                users.update(resp.get("users") or [])
        except SlackApiError as exc:
            log.warning("cannot read who may act (%s); refusing until Slack answers", exc.response.get("error"))
            return frozenset()  # not cached: the next click asks again
        result = frozenset(users)
        with self._lock:
            self._cache = (time.monotonic(), result)
        return result

    def is_allowed(self, user_id: str | None) -> bool:
        return bool(user_id) and user_id in self.allowed_users()

    def forget(self) -> None:
        with self._lock:
            self._cache = None


def authorizer(rt: "Runtime", client: WebClient) -> Authorizer:
    section = rt.settings.section("slack")
    return rt.service("slack.authorizer", lambda r: Authorizer(
        client,
        r.settings.slack_triage_channel,
        section.get("allowed_usergroup"),
        float(section.get("membership_ttl_seconds", DEFAULT_TTL_SECONDS)),
    ))
