"""Who may act on inquiries: members of the triage channel, or of a configured user group.

Membership is asked of Slack (``conversations.members``, ``usergroups.users.list``) and cached
for a short while, so a burst of clicks costs one API call and a person removed from the channel
loses access within a minute. When Slack cannot answer, the answer is "no" (never run open).

The check is made in one place, :func:`members_only`: a Bolt *listener middleware* given to every
listener that reads or changes inquiries (``app.action(..., middleware=[...])``). For anyone
else the listener never runs; the middleware answers Slack itself with the refusal that fits the
surface (an ephemeral note for a button, an ephemeral answer to a slash command, an error under
a field that keeps a modal open, a "Not allowed" modal for a shortcut, the empty App Home).
Like Bolt's own authorization middleware it runs before the listener's ``ack()``; the cached
membership keeps that within Slack's 3 seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from slack_bolt import Ack, BoltContext, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from intake.slack import blocks as B
from intake.slack.common import tell

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

REFUSAL = ("Only members of the triage channel can act on inquiries. "
           "Ask someone to invite you to the channel; nothing was changed.")


class Authorizer:
    def __init__(self, client: WebClient, channel: str | None, usergroup: str | None,
                 ttl: float) -> None:
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
    options = rt.settings.slack
    return rt.service("slack.authorizer", lambda r: Authorizer(
        client, r.settings.slack_triage_channel, options.allowed_usergroup, options.membership_ttl_seconds,
    ))


# How a refused request is answered: (ack, body, client, user id) -> the response Slack gets.
Refusal = Callable[[Ack, dict[str, Any], WebClient, str], BoltResponse]
ListenerMiddleware = Callable[..., "BoltResponse | None"]


def members_only(authz: Authorizer, refusal: Refusal) -> ListenerMiddleware:
    """Bolt listener middleware: members pass on to the listener, anyone else gets ``refusal``."""

    def members_only_middleware(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext,
                                next: Callable[[], None]) -> BoltResponse | None:
        user = context.user_id or ""
        if authz.is_allowed(user):
            next()
            return None
        # Not calling next() and returning a response: Bolt answers Slack with it and runs no
        # listener for this request.
        return refusal(ack, body, client, user)

    return members_only_middleware


def refuse_with_note(ack: Ack, body: dict[str, Any], client: WebClient, user: str) -> BoltResponse:
    """A button or menu: acknowledged, and a note only the clicker sees."""
    response = ack()
    tell(client, body, REFUSAL)
    return response


def refuse_command(ack: Ack, body: dict[str, Any], client: WebClient, user: str) -> BoltResponse:
    """A slash command: the refusal is the (ephemeral) answer itself."""
    return ack(text=REFUSAL, response_type="ephemeral")


def refuse_in_modal(block_id: str) -> Refusal:
    """A modal submission: the modal stays open with the refusal under ``block_id``, so nothing
    the person typed is lost."""

    def refuse(ack: Ack, body: dict[str, Any], client: WebClient, user: str) -> BoltResponse:
        return ack(response_action="errors", errors={block_id: REFUSAL})

    return refuse


def refuse_with_modal(ack: Ack, body: dict[str, Any], client: WebClient, user: str) -> BoltResponse:
    """A shortcut: there is no message to answer under, so a small modal says it."""
    response = ack()
    client.views_open(trigger_id=body["trigger_id"],
                      view=B.modal("Not allowed", [B.section(REFUSAL)], callback_id="refused"))
    return response


def refuse_home(ack: Ack, body: dict[str, Any], client: WebClient, user: str) -> BoltResponse:
    """The App Home of someone who may not act: no inquiries, and how to get access."""
    response = ack()
    opened_tab = (body.get("event") or {}).get("tab", "home")  # app_home_opened names the tab
    if user and opened_tab == "home":
        client.views_publish(user_id=user, view=B.home_view(B.HomeData(user_id=user, allowed=False)))
    return response
