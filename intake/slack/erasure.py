"""Slack after an erasure: cards become a placeholder, thread lines that quote the person go.

``deliver_cleanup(rt, plan)`` carries out one ``intake.privacy.erasure.SlackCleanup``. It is
idempotent, so a retry (or a second worker) does no harm: deleting a line already gone is fine,
writing the same placeholder twice shows one placeholder. The plan carries Slack coordinates and
ids only, never text, because the rows it was made from are gone.

Until the transactional outbox lands on main this runs as the job ``slack.erasure_cleanup``;
with the outbox it becomes the deliverer of the same name (the function already has the
deliverer's shape: a runtime and the plan's arguments).

Lines a person wrote in a card's thread are theirs, not the bot's: Slack lets an app delete
only its own messages, so those are left (``cant_delete_message`` is logged).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from intake.jobs import job
from intake.models import Event, Message
from intake.privacy.erasure import TEXT_EVENT_KINDS, SlackCleanup
from intake.slack import blocks as B
from intake.slack.client import slack_client

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

# Answers that mean "there is nothing left to change there".
ALREADY_GONE = ("message_not_found", "channel_not_found", "is_archived", "thread_not_found")
NOT_OURS = ("cant_delete_message", "cant_update_message")


def _tolerant(call, what: str) -> bool:
    """Run a Slack call; True if it changed something, False if the target is gone or not ours."""
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


def _line_for_message(rt: "Runtime", message_id: int) -> tuple[str, B.Message] | None:
    with rt.db.read_session() as session:
        message = session.get(Message, message_id)
        if message is None or not message.slack_ts or message.inquiry_id is None:
            return None
        return message.slack_ts, B.followup_line(
            inquiry_id=message.inquiry_id, direction=message.direction,
            sender=B.sender_text(message.sender_name, message.sender_address) if message.direction == "inbound" else None,
            subject=message.subject, body=message.latest_reply or message.text_body, author=message.author,
        )


def _line_for_event(rt: "Runtime", event_id: int) -> tuple[str, B.Message] | None:
    with rt.db.read_session() as session:
        event = session.get(Event, event_id)
        if event is None or not event.slack_ts or event.inquiry_id is None:
            return None
        text = None
        linked_id = (event.detail or {}).get("message_id")
        if event.kind in TEXT_EVENT_KINDS and linked_id:
            linked = session.get(Message, int(linked_id))
            text = (linked.text_body or linked.latest_reply) if linked is not None else None
        return event.slack_ts, B.event_line(event.kind, event.actor, event.detail, event.inquiry_id, text=text)


def _at(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def deliver_cleanup(rt: "Runtime", plan: SlackCleanup) -> str:
    """Carry out one plan; returns what was done (for logs and tests)."""
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would %s the card %s and delete %d thread line(s)",
                 plan.card, plan.card_ts, len(plan.lines))
        return "logged"
    client: WebClient = slack_client(rt)
    channel = plan.channel
    deleted = sum(
        _tolerant(lambda ts=ts: client.chat_delete(channel=channel, ts=ts), f"thread line {ts}")
        for ts in dict.fromkeys(plan.lines)
    )
    rewritten = 0
    for ts_and_line in [*(_line_for_message(rt, i) for i in plan.rewrite_messages),
                        *(_line_for_event(rt, i) for i in plan.rewrite_events)]:
        if ts_and_line is not None:
            ts, line = ts_and_line
            rewritten += _tolerant(lambda: client.chat_update(channel=channel, ts=ts, parse="none", **line.as_kwargs()),
                                   f"thread line {ts}")
    if plan.card in ("erased", "redacted"):
        card = B.erased_card(B.ErasedCardData(plan.inquiry_ids, plan.card, _at(plan.at), plan.category))
        _tolerant(lambda: client.chat_update(channel=channel, ts=plan.card_ts, parse="none", **card.as_kwargs()),
                  f"card {plan.card_ts}")
    elif plan.card == "deleted":
        _tolerant(lambda: client.chat_delete(channel=channel, ts=plan.card_ts), f"card {plan.card_ts}")
    elif plan.card == "refresh" and plan.refresh_inquiry_id is not None:
        from intake.slack.jobs import sync_card

        sync_card(rt, plan.refresh_inquiry_id)
    return f"{plan.card}: {deleted} line(s) deleted, {rewritten} rewritten"


@job("slack.erasure_cleanup")
def erasure_cleanup_job(rt: "Runtime", args: dict[str, Any]) -> str:
    return deliver_cleanup(rt, SlackCleanup(**args))

