"""Events API: de-duplicating Slack's retries, and emails forwarded into Slack.

Slack retries an event it thinks we missed (``X-Slack-Retry-Num``, same ``event_id``) at once,
after a minute and after five; a single-use row ``SeenNonce(kind="slack_event")`` makes the
second delivery a no-op. Emails that Slack's own forwarding address posts into a configured
channel arrive as ``message`` events of subtype ``file_share`` whose file has
``filetype: "email"``; they are stored like any other inbound email.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from typing import Any, Callable

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from intake.db import is_unique_violation
from intake.models import SeenNonce
from intake.slack.common import SlackDeps, one_line, store_inquiry, valid_address

log = logging.getLogger(__name__)

NONCE_KIND = "slack_event"


def claim_event(deps: SlackDeps, event_id: str) -> bool:
    """True the first time an event id is seen; False for Slack's retries of it."""
    try:
        with deps.rt.db.session() as session:
            session.add(SeenNonce(kind=NONCE_KIND, value=event_id[:255]))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            return False
        raise
    return True


def dedupe_middleware(deps: SlackDeps) -> Callable[..., Any]:
    def ignore_event_retries(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not claim_event(deps, str(event_id)):
            log.info("ignoring a retry of Slack event %s", event_id)
            return BoltResponse(status=200, body="")
        next()
        return None

    return ignore_event_retries


def _first_address(entries: Any) -> tuple[str | None, str | None]:
    for entry in entries or []:
        if isinstance(entry, dict):
            address = valid_address(entry.get("address"))
            if address:
                return address, entry.get("name") or None
    return None, None


def _header_date(value: object) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _msgid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = one_line(value, 900).strip().strip("<>").strip()
    return cleaned if cleaned and " " not in cleaned and "@" in cleaned else None


def store_email_file(deps: SlackDeps, client: WebClient, event: dict[str, Any], file: dict[str, Any],
                     event_id: str | None) -> tuple[int, bool] | None:
    """One forwarded email file -> one stored inbound message (then the usual pipeline)."""
    if "plain_text" not in file and file.get("id"):
        try:
            file = client.files_info(file=file["id"]).get("file") or file
        except SlackApiError as exc:
            log.warning("files.info failed for forwarded email %s: %s", file.get("id"), exc.response.get("error"))
            raise
    sender, name = _first_address(file.get("from"))
    if sender is None:
        log.warning("forwarded email %s has no usable sender; not stored", file.get("id"))
        return None
    headers_in = file.get("headers") or {}
    extra: dict[str, str] = {}
    if _msgid(headers_in.get("in_reply_to")):
        extra["In-Reply-To"] = f"<{_msgid(headers_in.get('in_reply_to'))}>"
    reply_to = valid_address(headers_in.get("reply_to"))
    if reply_to:
        extra["Reply-To"] = reply_to
    message_id = _msgid(headers_in.get("message_id")) or f"slack-file.{file.get('id', 'unknown')}@intake.invalid"
    return store_inquiry(
        deps.rt,
        subject=file.get("subject") or file.get("title") or "",
        body=file.get("plain_text") or file.get("preview_plain_text") or file.get("preview") or "",
        sender_address=sender, sender_name=name,
        provider="slack", source="email", provider_event_id=event_id,
        meta={"slack_channel": event.get("channel"), "slack_file": file.get("id"), "slack_user": event.get("user")},
        message_id=message_id, date=_header_date(headers_in.get("date")), headers=extra or None,
    )


def register(app: App, deps: SlackDeps) -> None:
    app.middleware(dedupe_middleware(deps))

    @app.event({"type": "message", "subtype": "file_share"})
    def on_file_share(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if event.get("channel") not in deps.rt.settings.slack.email_channels:
            return
        for file in event.get("files") or []:
            if file.get("filetype") == "email":
                store_email_file(deps, client, event, file, body.get("event_id"))

    @app.event("message")
    def on_other_message(event: dict[str, Any]) -> None:
        """Other channel messages are none of intake's business (registered to keep Bolt quiet)."""
        return None
