"""Background jobs that post to Slack: triage cards, thread lines, the spam digest.

Each job follows the same shape so that a retry never duplicates anything:

1. read what it needs in one short ``with rt.db.session()`` and close it;
2. call Slack (no transaction is open while the network is slow or down);
3. record the resulting ``ts`` in a new session with a guard (``... WHERE slack_ts IS NULL``), so
   of two concurrent runs only one keeps its post and the other deletes its copy.

A job that finds a ts already recorded updates (``chat.update``) instead of posting. With Slack
credentials unset every job logs what it would post and succeeds.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update

from intake.jobs import job, periodic
from intake.models import Event, Inquiry, Message
from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.client import channel_throttle, slack_client

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

DIGEST_EVERY_SECONDS = 3600
DEFAULT_BURST_MINUTES = 10.0
DIGEST_KIND = "slack_digest"
# Events the outbound layer records when a per-address cap held mail back (shown in the digest).
CAP_EVENT_KINDS = ("cap_hit",)
# Events whose thread line quotes the text of the message they point at (staff-written text).
TEXT_EVENT_KINDS = ("note", "reply_sent")
# System events shown on the card rather than as a thread line of their own: one post fewer per
# new inquiry in a channel Slack paces at one message a second. ``[slack] quiet_events``.
DEFAULT_QUIET_EVENTS = ("ack_sent", "ack_suppressed")
# Slack errors meaning "that card is gone": post a fresh one instead of failing forever.
GONE_ERRORS = ("message_not_found", "cant_update_message", "channel_not_found", "is_archived")


class CardNotPostedYet(RuntimeError):
    """A thread line arrived before its card; the queue retries the job a little later."""


# Slack's posting options for anything that carries email text: no unfurling (a link in an email
# must not fetch a preview), no link_names (never resolve @names), blocks already escaped.
POST_OPTIONS: dict[str, Any] = {"unfurl_links": False, "unfurl_media": False}


def channel_for(rt: "Runtime", category: str | None) -> str | None:
    """The per-category channel from ``[slack] channels``, else ``SLACK_TRIAGE_CHANNEL``."""
    channels = rt.settings.section("slack").get("channels") or {}
    if category and isinstance(channels, dict) and channels.get(category):
        return str(channels[category])
    return rt.settings.slack_triage_channel


def _suggest(rt: "Runtime", text: str, category: str | None) -> B.SuggestionData | None:
    """The knowledge-base match for the card, when the outbound layer is installed."""
    try:
        from intake.outbound import suggest_answer  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        found = suggest_answer(rt.settings, text, category)
    except Exception:  # a suggestion is a nicety; it must never block the card
        log.exception("suggest_answer failed for a card")
        return None
    if found is None:
        return None
    title = getattr(found, "title", None) or getattr(found, "question", None) or getattr(found, "key", "")
    return B.SuggestionData(title=str(title), answer=str(found.answer), score=float(found.score))


@dataclass
class _CardPlan:
    """What sync_card decided inside its read session."""

    inquiry_id: int
    channel: str | None
    ts: str | None
    owner_id: int
    card: B.CardData | None
    fold_into: tuple[int, str, str] | None = None  # (owner id, channel, ts)
    filtered: bool = False


def _plan_card(rt: "Runtime", inquiry_id: int) -> _CardPlan | None:
    window = dt.timedelta(minutes=float(rt.settings.section("slack").get("burst_minutes", DEFAULT_BURST_MINUTES)))
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, inquiry_id)
        if inquiry is None:
            return None
        if not inquiry.slack_ts:
            if Q.is_filtered(session, inquiry):
                return _CardPlan(inquiry_id, None, None, inquiry_id, None, filtered=True)
            owner = burst_owner_for(session, inquiry, window)
            if owner is not None:
                return _CardPlan(inquiry_id, owner.slack_channel, owner.slack_ts, owner.id, None,
                                 fold_into=(owner.id, owner.slack_channel or "", owner.slack_ts or ""))
            card = Q.card_data(session, inquiry_id)
            return _CardPlan(inquiry_id, channel_for(rt, inquiry.category), None, inquiry_id, card)
        group = Q.card_group(session, inquiry)
        owner_id = group[0].id
        card = Q.card_data(session, owner_id)
        return _CardPlan(inquiry_id, inquiry.slack_channel, inquiry.slack_ts, owner_id, card)


def burst_owner_for(session, inquiry: Inquiry, window: dt.timedelta) -> Inquiry | None:
    if window.total_seconds() <= 0:
        return None
    return Q.burst_owner(session, inquiry, window)


def _render(rt: "Runtime", card: B.CardData) -> B.Message:
    if card.status in ("new", "open"):
        suggestion = _suggest(rt, card.latest_reply or card.subject, card.category)
        if suggestion is not None:
            card = B.CardData(**{**card.__dict__, "suggestion": suggestion})
    return B.triage_card(card, rt.settings.category_names)


def _record_card(rt: "Runtime", inquiry_id: int, channel: str, ts: str) -> bool:
    """Store where the card lives, unless another run got there first."""
    with rt.db.session() as session:
        result = session.execute(
            update(Inquiry)
            .where(Inquiry.id == inquiry_id, Inquiry.slack_ts.is_(None))
            .values(slack_channel=channel, slack_ts=ts)
        )
        return result.rowcount == 1


def _forget_card(rt: "Runtime", channel: str, ts: str) -> None:
    with rt.db.session() as session:
        session.execute(
            update(Inquiry).where(Inquiry.slack_channel == channel, Inquiry.slack_ts == ts)
            .values(slack_channel=None, slack_ts=None)
        )


@job("slack.sync_card")
def sync_card(rt: "Runtime", inquiry_id: int) -> str:
    """Post the inquiry's triage card, or update it in place when it already exists.

    Returns what it did (``posted``, ``updated``, ``folded``, ``filtered``, ``logged``, ``skipped``),
    which tests and logs use.
    """
    plan = _plan_card(rt, inquiry_id)
    if plan is None:
        return "skipped"
    if plan.filtered:
        log.info("inquiry #%s is spam or automated: left for the digest", inquiry_id)
        return "filtered"
    if plan.fold_into is not None:
        return _fold(rt, plan)
    if plan.card is None:
        return "skipped"
    if not rt.settings.slack_enabled:
        message = B.triage_card(plan.card, rt.settings.category_names)
        log.info("Slack is off; would %s card in %s: %s", "update" if plan.ts else "post",
                 plan.channel or "(no channel)", message.text)
        return "logged"
    if not plan.channel:
        log.warning("no Slack channel for inquiry #%s: set SLACK_TRIAGE_CHANNEL", inquiry_id)
        return "skipped"
    message = _render(rt, plan.card)
    client = slack_client(rt)
    if plan.ts:
        try:
            client.chat_update(channel=plan.channel, ts=plan.ts, parse="none", **message.as_kwargs())
            return "updated"
        except SlackApiError as exc:
            if exc.response.get("error") not in GONE_ERRORS:
                raise
            log.warning("card of inquiry #%s is gone from Slack (%s); posting a new one",
                        inquiry_id, exc.response.get("error"))
            _forget_card(rt, plan.channel, plan.ts)
            plan = _plan_card(rt, inquiry_id)
            if plan is None or plan.card is None or not plan.channel:
                return "skipped"
            message = _render(rt, plan.card)
    channel_throttle(rt).wait(plan.channel)
    resp = client.chat_postMessage(channel=plan.channel, **POST_OPTIONS, **message.as_kwargs())
    channel, ts = resp["channel"], resp["ts"]
    if _record_card(rt, plan.owner_id, channel, ts):
        return "posted"
    # Another run posted this card while we were talking to Slack: keep theirs, drop ours.
    client.chat_delete(channel=channel, ts=ts)
    return sync_card(rt, inquiry_id)


def _fold(rt: "Runtime", plan: _CardPlan) -> str:
    """Fold a burst inquiry into its sender's earlier card: one card, one thread."""
    assert plan.fold_into is not None
    owner_id, channel, ts = plan.fold_into
    if not _record_card(rt, plan.inquiry_id, channel, ts):
        return sync_card(rt, plan.inquiry_id)  # someone recorded a card meanwhile
    with rt.db.session() as session:
        card = Q.card_data(session, plan.inquiry_id, with_folded=False)
        latest = Q.latest_inbound(session, plan.inquiry_id)
        if latest is not None and latest.slack_ts is None:
            latest_id = latest.id
        else:
            latest_id = None
    if card is None:
        return "skipped"
    line = B.followup_line(inquiry_id=plan.inquiry_id, direction="inbound",
                           sender=B.sender_label(card.sender_name, card.sender_address),
                           subject=card.subject, body=card.latest_reply, show_id=True)
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would fold inquiry #%s into the card of #%s", plan.inquiry_id, owner_id)
        return "logged"
    client = slack_client(rt)
    channel_throttle(rt).wait(channel)
    resp = client.chat_postMessage(channel=channel, thread_ts=ts, **POST_OPTIONS, **line.as_kwargs())
    if latest_id is not None:
        _record_message_ts(rt, latest_id, resp["ts"])
    sync_card(rt, owner_id)
    return "folded"


def _record_message_ts(rt: "Runtime", message_id: int, ts: str) -> bool:
    with rt.db.session() as session:
        result = session.execute(
            update(Message).where(Message.id == message_id, Message.slack_ts.is_(None)).values(slack_ts=ts)
        )
        return result.rowcount == 1


def _card_first(rt: "Runtime", inquiry_id: int) -> tuple[str, str]:
    """A thread line whose card is not posted yet (its sync_card job is still queued or running
    on another worker): post the card now. sync_card's guard keeps it to one card either way."""
    sync_card(rt, inquiry_id)
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, inquiry_id)
        channel, ts = (inquiry.slack_channel, inquiry.slack_ts) if inquiry else (None, None)
    if not channel or not ts:
        raise CardNotPostedYet(f"inquiry #{inquiry_id} has no card yet; retrying later")
    return channel, ts


@job("slack.post_followup")
def post_followup(rt: "Runtime", message_id: int) -> str:
    """Post a follow-up email (or a reply staff sent) in its card's thread, once.

    An inbound follow-up on a closed inquiry reopens it first (the domain's ``reopen``), and the
    card is then updated to show the new state.
    """
    reopened = False
    with rt.db.session() as session:
        message = session.get(Message, message_id)
        if message is None or message.slack_ts or message.inquiry_id is None:
            return "skipped"
        inquiry = message.inquiry
        assert inquiry is not None
        if message.direction == "inbound" and inquiry.status == "closed":
            from intake import inquiries

            inquiries.reopen(session, inquiry.id, "system")
            session.flush()
        # The pipeline reopens a closed inquiry when a follow-up arrives (event "reopened");
        # this line says so, and takes that event's place in the thread.
        reopen_event = session.scalar(
            select(Event).where(Event.inquiry_id == inquiry.id, Event.kind == "reopened",
                                Event.actor == "system", Event.slack_ts.is_(None))
            .order_by(Event.id.desc()).limit(1)
        ) if message.direction == "inbound" else None
        reopened = reopen_event is not None
        reopen_event_id = reopen_event.id if reopen_event is not None else None
        inquiry_id = inquiry.id
        channel, ts = inquiry.slack_channel, inquiry.slack_ts
        filtered = not ts and Q.is_filtered(session, inquiry)
        show_id = bool(ts) and len(Q.card_group(session, inquiry)) > 1
        line = B.followup_line(
            inquiry_id=inquiry_id, direction=message.direction,
            sender=B.sender_label(message.sender_name, message.sender_address) if message.direction == "inbound" else None,
            subject=message.subject, body=message.latest_reply or message.text_body, author=message.author,
            reopened=reopened, show_id=show_id,
        )
    if reopened:
        rt.enqueue("slack.sync_card", inquiry_id)
    if filtered:
        return "filtered"
    outcome, posted_ts = _post_in_thread(
        rt, inquiry_id, channel, ts, line, lambda posted: _record_message_ts(rt, message_id, posted)
    )
    if outcome != "posted":
        return outcome
    if reopen_event_id is not None:
        _record_event_ts(rt, reopen_event_id, posted_ts)
    if not reopened:
        rt.enqueue("slack.sync_card", inquiry_id)  # message count and latest text changed
    return "posted"


def _post_in_thread(rt: "Runtime", inquiry_id: int, channel: str | None, ts: str | None, line, record) -> tuple[str, str | None]:
    """Post one line in the card's thread and record its ts; a line someone else recorded first
    (a concurrent retry) is deleted again, so the thread shows it once."""
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would post in the thread of inquiry #%s: %s", inquiry_id, line.text)
        return "logged", None
    if not ts or not channel:
        channel, ts = _card_first(rt, inquiry_id)
    client = slack_client(rt)
    channel_throttle(rt).wait(channel)
    resp = client.chat_postMessage(channel=channel, thread_ts=ts, **POST_OPTIONS, **line.as_kwargs())
    if not record(resp["ts"]):
        client.chat_delete(channel=channel, ts=resp["ts"])
        return "skipped", None
    return "posted", resp["ts"]


def _record_event_ts(rt: "Runtime", event_id: int, ts: str) -> bool:
    with rt.db.session() as session:
        result = session.execute(
            update(Event).where(Event.id == event_id, Event.slack_ts.is_(None)).values(slack_ts=ts)
        )
        return result.rowcount == 1


@job("slack.post_event")
def post_event(rt: "Runtime", event_id: int) -> str:
    """Post "who did what" in the card's thread, once per event."""
    with rt.db.session() as session:
        event = session.get(Event, event_id)
        if event is None or event.slack_ts or event.inquiry_id is None:
            return "skipped"
        inquiry = session.get(Inquiry, event.inquiry_id)
        assert inquiry is not None
        channel, ts = inquiry.slack_channel, inquiry.slack_ts
        filtered = not ts and Q.is_filtered(session, inquiry)
        show_id = bool(ts) and len(Q.card_group(session, inquiry)) > 1
        text = None
        linked_id = (event.detail or {}).get("message_id")
        if event.kind in TEXT_EVENT_KINDS and linked_id:
            linked = session.get(Message, int(linked_id))
            text = (linked.text_body or linked.latest_reply) if linked is not None else None
        line = B.event_line(event.kind, event.actor, event.detail, inquiry.id, text=text, show_id=show_id)
        inquiry_id = inquiry.id
        kind = event.kind
    if filtered:
        return "filtered"
    quiet = rt.settings.section("slack").get("quiet_events", DEFAULT_QUIET_EVENTS)
    if kind in quiet:
        return "quiet" if sync_card(rt, inquiry_id) != "skipped" else "skipped"
    outcome, _ = _post_in_thread(
        rt, inquiry_id, channel, ts, line, lambda posted: _record_event_ts(rt, event_id, posted)
    )
    return outcome


def _cap_notes(session, since) -> list[str]:
    """Mail the outbound caps held back since the last digest: the ceiling on all mail to one
    address (``cap_hit``) and the one-acknowledgment-per-sender limit (``ack_suppressed`` with a
    ``cap``)."""
    stmt = select(Event.kind, Event.detail).where(Event.kind.in_((*CAP_EVENT_KINDS, "ack_suppressed")))
    if since is not None:
        stmt = stmt.where(Event.created_at > since)
    ceiling = per_sender = 0
    for kind, detail in session.execute(stmt):
        if kind in CAP_EVENT_KINDS:
            ceiling += 1
        elif (detail or {}).get("cap"):
            per_sender += 1
    notes = []
    if ceiling:
        notes.append(f"{ceiling} emails held back by the limit on mail to one address")
    if per_sender:
        notes.append(f"{per_sender} acknowledgments skipped: the sender already had one recently")
    return notes


def _digest_data(rt: "Runtime") -> B.DigestData | None:
    with rt.db.session() as session:
        last = session.scalar(
            select(Event).where(Event.kind == DIGEST_KIND).order_by(Event.id.desc()).limit(1)
        )
        after_id = int((last.detail or {}).get("through_id", 0)) if last else 0
        since = Q.aware(last.created_at) if last else None
        items = Q.filtered_since(session, after_id)
        notes = _cap_notes(session, since)
        if not items and not notes:
            return None
        counts: dict[str, int] = {}
        for inquiry in items:
            key = "spam" if inquiry.status == "spam" else (inquiry.category or "automated")
            counts[key] = counts.get(key, 0) + 1
        return B.DigestData(
            counts=sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])),
            after_id=after_id,
            through_id=max((i.id for i in items), default=after_id),
            samples=Q.rows_for(items[:5]),
            notes=notes,
        )


@periodic("slack.digest", every_seconds=DIGEST_EVERY_SECONDS)
def digest(rt: "Runtime") -> str:
    """Post one card counting the spam and automated inquiries filtered since the last digest."""
    data = _digest_data(rt)
    if data is None:
        return "empty"
    message = B.digest_card(data)
    ts: str | None = None
    channel = rt.settings.slack_triage_channel
    if rt.settings.slack_enabled and channel:
        client = slack_client(rt)
        channel_throttle(rt).wait(channel)
        resp = client.chat_postMessage(channel=channel, **POST_OPTIONS, **message.as_kwargs())
        channel, ts = resp["channel"], resp["ts"]
    else:
        log.info("Slack is off; would post the digest: %s", message.text)
    with rt.db.session() as session:
        session.add(Event(
            inquiry_id=None, actor="system", kind=DIGEST_KIND, slack_ts=ts,
            detail={"after_id": data.after_id, "through_id": data.through_id,
                    "counts": dict(data.counts), "channel": channel},
        ))
    return "posted" if ts else "logged"
