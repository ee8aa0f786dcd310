"""Slack after an erasure: cards become a placeholder, thread lines that quote the person go.

The outbox delivers ``slack.erasure_cleanup`` rows, owed in the erasure's own transaction
(``intake.privacy.erasure.owe_slack``); each carries one ``SlackCleanup`` plan: Slack
coordinates and ids, never text, because the rows it was made from are gone.

Which lines go: those whose ts was recorded, and every line in the card's thread whose Slack
metadata names an erased inquiry or a removed message or event (every line intake posts carries
it, see ``intake.slack.deliveries``), so a line posted but never recorded (a worker killed in
between, or a line delivery under way while the erasure committed) goes too. The plan is
delivered once more ten minutes later for the same reason.

Idempotent: a line already gone is fine, the same placeholder written twice is one placeholder.
Lines a person wrote in the thread are theirs, not the bot's: Slack lets an app delete only its
own messages, so those stay (and carry no intake metadata).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from intake.models import Event, Message
from intake.outbox import Ticket
from intake.privacy.erasure import CLEANUP_KIND, SlackCleanup
from intake.slack import blocks as B
from intake.slack.client import slack_client
from intake.slack.deliveries import CARD_METADATA, LINE_METADATA, TEXT_EVENT_KINDS, slack_deliverer

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# Answers that mean "there is nothing left to change there".
ALREADY_GONE = ("message_not_found", "channel_not_found", "is_archived", "thread_not_found")
NOT_OURS = ("cant_delete_message", "cant_update_message")
PAGES = 20


def _tolerant(call: Callable[[], object], what: str) -> bool:
    """Run a Slack call; True if it changed something, False if the target is gone or not ours.
    Any other error is raised, and the outbox retries the delivery."""
    try:
        call()
        return True
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ALREADY_GONE:
            return False
        if error in NOT_OURS:
            log.warning("cannot change %s in Slack (%s): it was not posted by intake", what, error)
            return False
        raise


def lines_to_delete(client: WebClient, plan: SlackCleanup) -> list[str]:
    """The recorded lines, plus every line of the thread whose metadata names what went."""
    found = dict.fromkeys(plan.lines)
    inquiries, keys = set(plan.inquiry_ids), set(plan.line_keys)
    cursor = None
    for _ in range(PAGES):
        try:
            resp = client.conversations_replies(channel=plan.channel, ts=plan.card_ts, include_all_metadata=True,
                                                limit=200, cursor=cursor)
        except SlackApiError as exc:
            if exc.response.get("error") in ALREADY_GONE:
                break
            raise
        for message in resp.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if message.get("ts") == plan.card_ts or metadata.get("event_type") not in (LINE_METADATA, CARD_METADATA):
                continue
            if payload.get("inquiry_id") in inquiries or payload.get("key") in keys:
                found[str(message["ts"])] = None
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    found.pop(plan.card_ts, None)
    return list(found)


def _line_for_message(rt: "Runtime", message_id: int) -> tuple[str, B.Message] | None:
    with rt.db.read_session() as session:
        message = session.get(Message, message_id)
        if message is None or not message.slack_ts or message.inquiry_id is None:
            return None
        return message.slack_ts, B.followup_line(
            inquiry_id=message.inquiry_id, direction=message.direction,
            sender=B.sender_text(message.sender_name, message.sender_address),
            subject=message.subject, body=message.latest_reply or message.text_body, author=message.author,
        )


def _line_for_event(rt: "Runtime", event_id: int) -> tuple[str, B.Message] | None:
    with rt.db.read_session() as session:
        event = session.get(Event, event_id)
        if event is None or not event.slack_ts or event.inquiry_id is None:
            return None
        linked_id = (event.detail or {}).get("message_id")
        linked = session.get(Message, int(linked_id)) if event.kind in TEXT_EVENT_KINDS and linked_id else None
        text = (linked.text_body or linked.latest_reply) if linked is not None else None
        return event.slack_ts, B.event_line(event.kind, event.actor, event.detail, event.inquiry_id, text=text)


def _at(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def cleanup(rt: "Runtime", plan: SlackCleanup) -> str:
    """Carry out one plan; returns what was done (for the delivery's result and tests)."""
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would %s the card %s and delete its lines", plan.card, plan.card_ts)
        return "logged"
    client = slack_client(rt)
    channel = plan.channel
    deleted = sum(_tolerant(lambda ts=ts: client.chat_delete(channel=channel, ts=ts), f"line {ts}")
                  for ts in lines_to_delete(client, plan))
    rewritten = 0
    for found in [*map(lambda i: _line_for_message(rt, i), plan.rewrite_messages),
                  *map(lambda i: _line_for_event(rt, i), plan.rewrite_events)]:
        if found is not None:
            ts, line = found
            rewritten += _tolerant(lambda: client.chat_update(channel=channel, ts=ts, parse="none", **line.as_kwargs()),
                                   f"line {ts}")
    if plan.card in ("erased", "redacted"):
        card = B.erased_card(B.ErasedCardData(plan.inquiry_ids, plan.card, _at(plan.at), plan.category))
        _tolerant(lambda: client.chat_update(channel=channel, ts=plan.card_ts, parse="none", **card.as_kwargs()),
                  f"card {plan.card_ts}")
    elif plan.card == "deleted":
        _tolerant(lambda: client.chat_delete(channel=channel, ts=plan.card_ts), f"card {plan.card_ts}")
    return f"{plan.card}: -{deleted} ~{rewritten}"


@slack_deliverer(CLEANUP_KIND)
def deliver_cleanup(rt: "Runtime", ticket: Ticket) -> str:
    return cleanup(rt, SlackCleanup(**ticket.args))
