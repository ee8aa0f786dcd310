"""What every listener shares: the runtime, the authorization check, and running a domain action.

Listeners stay thin: parse the payload into ids and strings and call the domain in one short
transaction. Whether the user may act was settled before the listener ran (the listener
middleware of :mod:`intake.slack.authz`). The domain's events owe the card
update and the thread line in that same transaction (intake/outbox/), so a listener never posts
and never enqueues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from intake import inquiries
from intake.pipeline import process_message_job

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime
    from intake.slack.authz import Authorizer

log = logging.getLogger(__name__)


class ActionRefused(Exception):
    """The domain refused an action (unknown inquiry, impossible transition); shown to the user."""


@dataclass
class SlackDeps:
    rt: "Runtime"
    authz: "Authorizer"


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to whoever clicked: only they see it, nothing is posted for others."""
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id") \
        or (body.get("container") or {}).get("channel_id")
    if not user:
        return
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            client.chat_postMessage(channel=user, text=text)  # a DM from the app
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", user, exc.response.get("error"))


def int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def run_action(deps: SlackDeps, inquiry_id: int, action: Callable[..., Any], *args: Any, actor: str,
               version: int | None = None) -> int | None:
    """Run one lifecycle action in its own transaction; returns the recorded Event's id.

    ``version`` is the card's version the button carried: a stale one (a double click, or
    someone else acted first) is refused by the domain and nothing changes.
    """
    rt = deps.rt
    kwargs = {"version": version} if version is not None else {}
    with rt.db.session() as session:
        try:
            event = action(session, inquiry_id, *args, actor=actor, **kwargs)
        except (LookupError, ValueError) as exc:
            raise ActionRefused(str(exc) or exc.__class__.__name__) from exc
        return event.id


def valid_address(address: str | None) -> str | None:
    """A plain ``local@domain`` address, or None. Slack form text never reaches a header unchecked."""
    from email.utils import parseaddr

    if not address or not isinstance(address, str):
        return None
    _, parsed = parseaddr(address.strip())
    if not parsed or parsed != address.strip() or "@" not in parsed or any(c.isspace() for c in parsed):
        return None
    local, _, domain_part = parsed.rpartition("@")
    if not local or "." not in domain_part:
        return None
    return parsed.lower()


def one_line(text: str | None, limit: int = 250) -> str:
    """Header-bound text (subject, display name) with CR, LF and other controls removed."""
    cleaned = "".join(" " if (ord(c) < 32 or c == "\x7f") else c for c in (text or ""))
    return " ".join(cleaned.split())[:limit]


def store_inquiry(rt: "Runtime", *, subject: str, body: str, sender_address: str,
                  sender_name: str | None, provider: str, source: str,
                  provider_event_id: str | None, meta: dict[str, Any],
                  message_id: str | None = None, date: Any = None,
                  headers: dict[str, str] | None = None) -> tuple[int, bool]:
    """Turn Slack-provided fields into an RFC 822 message, store it like any email, process it.

    Returns (message id, duplicate). A fixed ``message_id`` makes a retried Slack delivery a
    duplicate instead of a second inquiry.
    """
    raw = inquiries.synthesize_message(
        subject=one_line(subject), body=body, sender_address=sender_address,
        sender_name=one_line(sender_name) or None, date=date,
        headers=list((headers or {}).items()), message_id=message_id,
    )
    with rt.db.session() as session:
        result = inquiries.store_raw(session, raw, provider=provider, source=source,
                                     provider_event_id=provider_event_id, meta=meta)
    if not result.duplicate:
        process_message_job.enqueue(rt, result.message_id)
    return result.message_id, result.duplicate
