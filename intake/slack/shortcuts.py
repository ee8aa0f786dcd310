"""Shortcuts: "Log as inquiry" on any Slack message, and "New inquiry" from anywhere.

Both open a modal at once (the trigger_id expires in 3 seconds); the message's author is looked
up afterwards and the modal updated with their name and address, so a slow ``users.info`` never
costs the modal.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from intake.slack import blocks as B
from intake.slack.authz import members_only, refuse_with_modal
from intake.slack.common import SlackDeps

log = logging.getLogger(__name__)

LOG_MESSAGE_CALLBACK = "log_as_inquiry"
NEW_INQUIRY_CALLBACK = "new_inquiry"


def register(app: App, deps: SlackDeps) -> None:
    members = [members_only(deps.authz, refuse_with_modal)]

    @app.message_shortcut(LOG_MESSAGE_CALLBACK, middleware=members)
    def on_log_message(ack: Ack, body: dict[str, Any], shortcut: dict[str, Any], client: WebClient) -> None:
        ack()
        message = shortcut.get("message") or {}
        channel = (shortcut.get("channel") or {}).get("id")
        first_line = (message.get("text") or "").strip().splitlines()[:1]
        meta = {"channel": channel, "ts": message.get("ts")}
        view = B.new_inquiry_modal(callback_id=B.V_LOG_MESSAGE, title="Log as inquiry",
                                   subject=first_line[0][:120] if first_line else None,
                                   body=message.get("text"), private_metadata=meta)
        opened = client.views_open(trigger_id=body["trigger_id"], view=view)
        author = message.get("user")
        if not author:
            return
        try:
            profile = (client.users_info(user=author).get("user") or {}).get("profile") or {}
        except SlackApiError as exc:
            log.info("users.info failed for a logged message: %s", exc.response.get("error"))
            return
        if profile.get("email"):
            view = B.new_inquiry_modal(callback_id=B.V_LOG_MESSAGE, title="Log as inquiry",
                                       sender_address=profile.get("email"),
                                       sender_name=profile.get("real_name") or profile.get("display_name"),
                                       subject=first_line[0][:120] if first_line else None,
                                       body=message.get("text"), private_metadata=meta)
            opened_view = opened.get("view") or {}
            client.views_update(view_id=opened_view.get("id"), hash=opened_view.get("hash"), view=view)

    @app.shortcut(NEW_INQUIRY_CALLBACK, middleware=members)
    def on_new(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=B.new_inquiry_modal())
