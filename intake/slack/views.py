"""Modal submissions: reply or note, log a new inquiry, log a Slack message as an inquiry.

A submission is answered within Slack's 3 seconds either with ``ack()`` (the modal closes) or
with ``response_action="errors"`` (the modal stays open and shows what to fix): a refusal or a
missing field never loses what the person typed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from slack_bolt import Ack, App

from intake.slack import blocks as B
from intake.slack.actions import send_reply
from intake.slack.authz import members_only, refuse_in_modal
from intake import inquiries
from intake.slack.common import ActionRefused, SlackDeps, int_or_none, run_action, store_inquiry, valid_address

log = logging.getLogger(__name__)


def values(view: dict[str, Any]) -> dict[str, Any]:
    """``{block_id: value}`` for the inputs of a submitted view (text, radio or select)."""
    out: dict[str, Any] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for element in actions.values():
            if "selected_option" in element:
                out[block_id] = (element.get("selected_option") or {}).get("value")
            else:
                out[block_id] = element.get("value")
    return out


def _meta(view: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def register(app: App, deps: SlackDeps) -> None:
    def members(block_id: str) -> list:
        """Members only; anyone else sees the refusal under ``block_id`` and the modal stays."""
        return [members_only(deps.authz, refuse_in_modal(block_id))]

    @app.view(B.V_REPLY, middleware=members("mode"))
    def on_reply(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta, got = _meta(view), values(view)
        inquiry_id = int_or_none(meta.get("inquiry_id"))
        body_block = f"body_{int(meta.get('revision', 0))}"
        text = (got.get(body_block) or "").strip()
        mode = got.get("mode")
        if not text:
            ack(response_action="errors", errors={body_block: "Write the message first."})
            return
        if inquiry_id is None or mode not in (B.REPLY_SEND, B.REPLY_NOTE):
            ack(response_action="errors", errors={"mode": "Choose what should happen."})
            return
        try:
            if mode == B.REPLY_SEND:
                send_reply(deps, inquiry_id, text, _user(body), to_address=got.get("recipient"))
            else:
                run_action(deps, inquiry_id, inquiries.add_note, text, actor=_user(body))
        except ActionRefused as exc:
            ack(response_action="errors", errors={"mode": str(exc)[:150]})
            return
        ack()

    @app.view(B.V_NOTE, middleware=members("body"))
    def on_note(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        inquiry_id = int_or_none(_meta(view).get("inquiry_id"))
        text = (values(view).get("body") or "").strip()
        if not text or inquiry_id is None:
            ack(response_action="errors", errors={"body": "Write the note first."})
            return
        try:
            run_action(deps, inquiry_id, inquiries.add_note, text, actor=_user(body))
        except ActionRefused as exc:
            ack(response_action="errors", errors={"body": str(exc)[:150]})
            return
        ack()

    def log_from_modal(ack: Ack, body: dict[str, Any], view: dict[str, Any], *, source: str) -> None:
        got, meta = values(view), _meta(view)
        address = valid_address(got.get("sender_address"))
        errors = {}
        if address is None:
            errors["sender_address"] = "Enter one email address, like name@example.org."
        if not (got.get("subject") or "").strip():
            errors["subject"] = "Give it a subject."
        if not (got.get("body") or "").strip():
            errors["body"] = "Write what they asked."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        message_id = date = None
        if meta.get("channel") and meta.get("ts"):
            # One Slack message becomes one inquiry, however many times someone logs it: the same
            # fields make the same bytes (stored messages are deduplicated byte for byte), so
            # the Message-ID and the Date come from the Slack message, not from the clock.
            message_id = f"slack.{meta['channel']}.{meta['ts']}@intake.invalid"
            date = _slack_time(meta["ts"])
        store_inquiry(
            deps.rt, subject=got["subject"], body=got["body"], sender_address=address or "",
            sender_name=got.get("sender_name"), provider="slack", source=source,
            provider_event_id=None, message_id=message_id, date=date,
            meta={"slack_user": _user(body), "logged_via": source, **{k: v for k, v in meta.items() if k in ("channel", "ts")}},
        )

    @app.view(B.V_NEW, middleware=members("sender_address"))
    def on_new(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        log_from_modal(ack, body, view, source="manual")

    @app.view(B.V_LOG_MESSAGE, middleware=members("sender_address"))
    def on_log_message(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        log_from_modal(ack, body, view, source="slack")

    @app.view_closed(B.V_REPLY)
    def on_reply_closed(ack: Ack) -> None:
        ack()


def _slack_time(ts: str) -> dt.datetime | None:
    """A Slack message's ``ts`` ("1700000000.123456", seconds since the epoch) as a UTC time."""
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
