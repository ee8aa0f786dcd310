"""``@intake open press inquiries this week``: a mention answered in a thread with the results.

The text is parsed by the search language (``intake.search``) with its plain-English words on,
so a mention, ``/inquiries search``, the App Home box and ``intake list --query`` all agree.
Only people who may act on inquiries get an answer with inquiries in it.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from intake.slack import queries as Q
from intake.slack.authz import REFUSAL, members_only
from intake.slack.common import SlackDeps
from intake.slack.deliveries import POST_OPTIONS


def refuse_mention(ack: Any, body: dict[str, Any], client: WebClient, user: str) -> Any:
    """Someone who may not act mentioned the app: a note only they see, nothing in the channel."""
    response = ack()
    channel = (body.get("event") or {}).get("channel")
    if channel and user:
        client.chat_postEphemeral(channel=channel, user=user, text=REFUSAL)
    return response


def register(app: App, deps: SlackDeps) -> None:
    @app.event("app_mention", middleware=[members_only(deps.authz, refuse_mention)])
    def on_mention(event: dict[str, Any], client: WebClient) -> None:
        channel, user = event.get("channel"), event.get("user")
        if not channel or not user or event.get("bot_id"):
            return
        thread = event.get("thread_ts") or event.get("ts")
        with deps.rt.db.read_session() as session:
            reply = Q.query_answer(session, deps.rt.settings, event.get("text") or "", user=user, natural=True)
        client.chat_postMessage(channel=channel, thread_ts=thread, **POST_OPTIONS, **reply.as_kwargs())
