"""How the outbox delivers to Slack: triage cards, thread lines, the spam digest.

Each deliverer is handed a claimed ``Ticket`` (intake/outbox/worker.py) and follows one shape:

1. read what it needs in one short session and close it;
2. call Slack with no transaction open;
3. record the resulting ``ts`` with a guarded ``UPDATE`` (``... WHERE slack_ts IS NULL``).

**One card, ever.** A card's delivery row is unique per inquiry and leased while it runs, so two
workers never post the same card. Every card and line carries Slack message ``metadata`` naming
what it is; when an earlier attempt may have posted (a timeout, a 5xx after Slack acted, a worker
killed before the ``ts`` was stored: ``ticket.retried``), the deliverer looks for that metadata
in the channel or thread before posting again. Nothing is ever posted and then deleted.

With Slack credentials unset every deliverer logs what it would post and succeeds.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import defer

from intake.jobs import periodic
from intake.models import Event, Inquiry, Message, utcnow
from intake.outbox import Retry, Ticket, deliverer, lease_left, owe, still_ours, still_ours_many
from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.client import channel_throttle, slack_client

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

DeliverFn = Callable[["Runtime", Ticket], str]

DIGEST_EVERY_SECONDS = 3600
DIGEST_KIND = "slack_digest"
# Events the outbound layer records when a per-address cap held mail back (shown in the digest).
CAP_EVENT_KINDS = ("cap_hit",)
# Events whose thread line quotes the text of the message they point at (staff-written text).
TEXT_EVENT_KINDS = ("note", "reply_sent")
# Slack errors meaning "that card is gone": post a fresh one instead of failing forever.
GONE_ERRORS = ("message_not_found", "cant_update_message", "channel_not_found", "is_archived")
# Message metadata event types: how a card or a line is found again after an ambiguous failure.
CARD_METADATA = "intake_inquiry"
LINE_METADATA = "intake_line"
# How far back (before a delivery was owed) to look for a card that may already be posted.
LOOKUP_SLACK = dt.timedelta(minutes=5)
LOOKUP_PAGES = 10

# Slack's posting options for anything that carries email text: no unfurling (a link in an email
# must not fetch a preview), no link_names (never resolve @names), blocks already escaped.
POST_OPTIONS: dict[str, Any] = {"unfurl_links": False, "unfurl_media": False}


def slack_deliverer(kind: str, **options: Any) -> Callable[[DeliverFn], DeliverFn]:
    """``@deliverer`` for a Slack kind: a 429 that outlived the client's own retries comes back
    as the outbox's ``Retry`` after Slack's ``Retry-After``; other failures are retried with the
    outbox's backoff. A ``batch`` deliverer's outcomes get the same treatment."""

    def register(fn: DeliverFn) -> DeliverFn:
        @functools.wraps(fn)
        def deliver(rt: "Runtime", ticket: Ticket) -> str:
            try:
                return fn(rt, ticket)
            except SlackApiError as exc:
                raise _rate_limited(exc) from exc

        batch = options.pop("batch", None)
        if batch is not None:
            def deliver_batch(rt: "Runtime", tickets: list[Ticket]) -> dict[int, Any]:
                outcomes = batch(rt, tickets)
                return {key: _rate_limited(value) if isinstance(value, SlackApiError) else value
                        for key, value in outcomes.items()}

            options["batch"] = deliver_batch
        return deliverer(kind, channel="slack", **options)(deliver)

    return register


def _rate_limited(exc: SlackApiError) -> Exception:
    """Slack's 429 as the outbox's ``Retry`` (after its ``Retry-After``); any other error as is."""
    if exc.response.status_code != 429:
        return exc
    return Retry(f"{exc.__class__.__name__}: {exc}", after=_retry_after(exc.response))


def _retry_after(response: SlackResponse) -> float | None:
    value = response.headers.get("Retry-After") or response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def channel_for(rt: "Runtime", category: str | None) -> str | None:
    """The per-category channel from ``[slack] channels``, else ``SLACK_TRIAGE_CHANNEL``."""
    return rt.settings.slack.channel_for(category, rt.settings.slack_triage_channel)


def suggestions_for_cards(rt: "Runtime", items: list[tuple[str, str | None]]) -> list[B.SuggestionData | None]:
    """The knowledge-base match for each card, scored together; a failing suggestion never
    blocks a card."""
    from intake.outbound.knowledge import suggest_answers

    try:
        found = suggest_answers(rt.settings, items)
    except Exception:  # noqa: BLE001 - a suggestion is a nicety
        log.exception("suggest_answers failed for %d cards", len(items))
        return [None] * len(items)
    return [None if f is None else B.SuggestionData(title=str(f.question or f.key), answer=str(f.answer),
                                                    score=float(f.score)) for f in found]


def suggestion_for_card(rt: "Runtime", text: str, category: str | None) -> B.SuggestionData | None:
    """The knowledge-base match for the card; a failing suggestion never blocks the card."""
    return suggestions_for_cards(rt, [(text, category)])[0]


# ---- finding what an earlier attempt may have posted ---------------------------------------


def _metadata(event_type: str, key: str, inquiry_id: int) -> dict[str, Any]:
    return {"event_type": event_type, "event_payload": {"key": key, "inquiry_id": inquiry_id}}


def _matches(message: dict[str, Any], metadata: dict[str, Any]) -> bool:
    found = message.get("metadata") or {}
    return (found.get("event_type") == metadata["event_type"]
            and (found.get("event_payload") or {}).get("key") == metadata["event_payload"]["key"])


def find_posted(client: WebClient, channel: str, metadata: dict[str, Any], *, thread_ts: str | None,
                since: dt.datetime) -> str | None:
    """The ts of a message already carrying this metadata, or None.

    Top-level cards are searched in ``conversations.history`` from a little before the delivery
    was owed; thread lines in ``conversations.replies`` of their card.
    """
    cursor = None
    for _ in range(LOOKUP_PAGES):
        if thread_ts:
            resp = client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                limit=200, cursor=cursor)
        else:
            resp = client.conversations_history(channel=channel, include_all_metadata=True, limit=200,
                                                oldest=f"{(since - LOOKUP_SLACK).timestamp():.6f}", cursor=cursor)
        for message in resp.get("messages") or []:
            if _matches(message, metadata):
                return str(message["ts"])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def post_once(rt: "Runtime", ticket: Ticket, channel: str, message: B.Message, metadata: dict[str, Any],
              *, thread_ts: str | None = None, fenced: bool = False) -> tuple[str, str]:
    """Post, unless an earlier attempt of this delivery already did; returns (channel, ts).

    ``fenced``: the caller checked this attempt's lease in the database for its whole batch
    (outbox.still_ours_many); what is left to check before the post is the lease's time.
    """
    client = slack_client(rt)
    if ticket.retried:
        found = find_posted(client, channel, metadata, thread_ts=thread_ts, since=ticket.created_at)
        if found is not None:
            log.info("delivery %s: found its earlier post %s in %s; not posting again", ticket.key, found, channel)
            return channel, found
    channel_throttle(rt).wait(channel)
    if not (lease_left(rt, ticket) if fenced else still_ours(rt, ticket)):
        raise Retry(f"delivery {ticket.key} outlived its lease; another attempt has it")
    kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
    resp = client.chat_postMessage(channel=channel, metadata=metadata, **kwargs, **POST_OPTIONS,
                                   **message.as_kwargs())
    return resp["channel"], resp["ts"]


# ---- cards ---------------------------------------------------------------------------------


@dataclass
class _CardPlan:
    """What the card deliverer decided inside its read session."""

    inquiry_id: int
    channel: str | None
    ts: str | None
    owner_id: int
    card: B.CardData | None
    fold_into: tuple[int, str, str] | None = None  # (owner id, channel, ts)
    filtered: bool = False


def _plan_cards(rt: "Runtime", inquiry_ids: list[int]) -> dict[int, _CardPlan]:
    """What the card deliverer must do for each inquiry, read in one short session."""
    window = rt.settings.slack.burst_window
    plans: dict[int, _CardPlan] = {}
    with rt.db.read_session() as session:
        found = {i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(inquiry_ids)))}
        fresh = [found[i] for i in inquiry_ids if i in found and not found[i].slack_ts]
        filtered = Q.filtered_many(session, fresh)
        unfiltered = [i for i in fresh if i.id not in filtered]
        owners = Q.burst_owners(session, unfiltered, window) if window.total_seconds() > 0 else {}
        posted = [found[i] for i in inquiry_ids if i in found and found[i].slack_ts]
        groups = Q.card_groups(session, posted)
        wanted = [i.id for i in unfiltered if i.id not in owners] + [groups[i.id][0].id for i in posted]
        cards = Q.card_data_many(session, wanted)
        for inquiry_id in inquiry_ids:
            inquiry = found.get(inquiry_id)
            if inquiry is None:
                continue
            if inquiry.slack_ts:
                owner_id = groups[inquiry_id][0].id
                plans[inquiry_id] = _CardPlan(inquiry_id, inquiry.slack_channel, inquiry.slack_ts, owner_id,
                                              cards.get(owner_id))
            elif inquiry_id in filtered:
                plans[inquiry_id] = _CardPlan(inquiry_id, None, None, inquiry_id, None, filtered=True)
            elif inquiry_id in owners:
                owner = owners[inquiry_id]
                plans[inquiry_id] = _CardPlan(inquiry_id, owner.slack_channel, owner.slack_ts, owner.id, None,
                                              fold_into=(owner.id, owner.slack_channel or "", owner.slack_ts or ""))
            else:
                plans[inquiry_id] = _CardPlan(inquiry_id, channel_for(rt, inquiry.category), None, inquiry_id,
                                              cards.get(inquiry_id))
    return plans


def _plan_card(rt: "Runtime", inquiry_id: int) -> _CardPlan | None:
    return _plan_cards(rt, [inquiry_id]).get(inquiry_id)


def render_cards(rt: "Runtime", cards: list[B.CardData]) -> list[B.Message]:
    """The triage cards, with the knowledge-base suggestion on those still to be answered."""
    wanting = [i for i, card in enumerate(cards) if card.status in ("new", "open")]
    found = suggestions_for_cards(rt, [(cards[i].latest_reply or cards[i].subject, cards[i].category) for i in wanting])
    cards = list(cards)
    for i, suggestion in zip(wanting, found):
        if suggestion is not None:
            cards[i] = B.CardData(**{**cards[i].__dict__, "suggestion": suggestion})
    return [B.triage_card(card, rt.settings.category_names) for card in cards]


def render_card(rt: "Runtime", card: B.CardData) -> B.Message:
    return render_cards(rt, [card])[0]


def _record_card(rt: "Runtime", inquiry_id: int, channel: str, ts: str) -> bool:
    """Store where the card lives (once; a second recording is refused by the guard)."""
    return _record_cards(rt, [(inquiry_id, channel, ts)]) == 1


def _record_cards(rt: "Runtime", posted: list[tuple[int, str, str]]) -> int:
    """Store where each card lives, in one statement; returns how many were recorded (a card
    already recorded is refused by the guard)."""
    if not posted:
        return 0
    table = Inquiry.__table__
    with rt.db.session() as session:
        return session.execute(
            table.update()
            .where(table.c.id == bindparam("card_owner"), table.c.slack_ts.is_(None))
            .values(slack_channel=bindparam("card_channel"), slack_ts=bindparam("card_ts")),
            [{"card_owner": owner, "card_channel": channel, "card_ts": ts} for owner, channel, ts in posted],
        ).rowcount


def _forget_card(rt: "Runtime", channel: str, ts: str) -> None:
    with rt.db.session() as session:
        session.execute(
            update(Inquiry).where(Inquiry.slack_channel == channel, Inquiry.slack_ts == ts)
            .values(slack_channel=None, slack_ts=None)
            .execution_options(synchronize_session=False)
        )


def _log_unposted(rt: "Runtime", ticket: Ticket, plan: _CardPlan) -> str:
    """With Slack off: say what the card would be, once per inquiry at INFO (what a newcomer
    needs to see); later changes to the same card (an acknowledgment, a claim) only at DEBUG.
    "Once" is the first time this card's delivery completes: it may have been owed several
    times before it first ran (the acknowledgment goes first and owes the card again)."""
    assert plan.card is not None
    message = B.triage_card(plan.card, rt.settings.category_names)
    first = not ticket.delivered_before
    log.log(logging.INFO if first else logging.DEBUG, "Slack is off; would %s card in %s: %s",
            "post" if first else "update", plan.channel or "(no channel)", message.text)
    return "logged"


def _deliver_cards(rt: "Runtime", tickets: list[Ticket]) -> dict[int, Any]:
    """Cards for several inquiries: planned in one session, suggestions scored together, the
    leases checked once, each card posted or updated, the new ones recorded in one statement.

    Whatever is not a plain post or update goes through :func:`deliver_card` one at a time,
    after the batch: a fold, a filtered inquiry, a card gone from Slack, and an inquiry whose
    sender has another one in this batch (the later one may fold into the card posted now)."""
    plans = _plan_cards(rt, [t.inquiry_id for t in tickets if t.inquiry_id is not None])
    outcomes: dict[int, Any] = {}
    simple: list[tuple[Ticket, _CardPlan]] = []
    alone: list[Ticket] = []
    senders: set[int] = set()
    with rt.db.read_session() as session:
        contacts = dict(session.execute(select(Inquiry.id, Inquiry.contact_id).where(
            Inquiry.id.in_([p.inquiry_id for p in plans.values() if not p.ts])
        )).all()) if plans else {}
    for ticket in tickets:
        plan = plans.get(ticket.inquiry_id) if ticket.inquiry_id is not None else None
        if plan is None or plan.filtered or plan.fold_into is not None or plan.card is None:
            alone.append(ticket)
            continue
        contact = contacts.get(plan.inquiry_id)
        if not plan.ts and contact is not None:
            if contact in senders:
                alone.append(ticket)
                continue
            senders.add(contact)
        simple.append((ticket, plan))
    if not rt.settings.slack_enabled:
        for ticket, plan in simple:
            outcomes[ticket.id] = _log_unposted(rt, ticket, plan)
        simple = []
    messages = render_cards(rt, [plan.card for _, plan in simple])
    held = still_ours_many(rt, [ticket for ticket, plan in simple if not plan.ts])
    client = slack_client(rt)
    posted: list[tuple[int, str, str]] = []
    for (ticket, plan), message in zip(simple, messages):
        try:
            if not plan.channel:
                log.warning("no Slack channel for inquiry #%s: set SLACK_TRIAGE_CHANNEL", plan.inquiry_id)
                outcomes[ticket.id] = "skipped"
            elif plan.ts:
                try:
                    client.chat_update(channel=plan.channel, ts=plan.ts, parse="none", **message.as_kwargs())
                    outcomes[ticket.id] = "updated"
                except SlackApiError as exc:
                    if exc.response.get("error") not in GONE_ERRORS:
                        raise
                    alone.append(ticket)  # gone from Slack: the single path posts it afresh
            elif ticket.id not in held:
                outcomes[ticket.id] = Retry(f"delivery {ticket.key} outlived its lease; another attempt has it")
            else:
                metadata = _metadata(CARD_METADATA, f"card:{plan.owner_id}", plan.owner_id)
                channel, ts = post_once(rt, ticket, plan.channel, message, metadata, fenced=True)
                posted.append((plan.owner_id, channel, ts))
                outcomes[ticket.id] = "posted"
        except Exception as exc:  # noqa: BLE001 - this card is retried; the others go on
            outcomes[ticket.id] = exc
    if _record_cards(rt, posted) < len(posted):
        log.error("some of inquiries %s already had a card when theirs were recorded", [p[0] for p in posted])
    for ticket in alone:
        try:
            outcomes[ticket.id] = deliver_card(rt, ticket)
        except Exception as exc:  # noqa: BLE001 - recorded by the worker
            outcomes[ticket.id] = exc
    return outcomes


@slack_deliverer("slack.card", coalesce=True, batch=_deliver_cards)
def deliver_card(rt: "Runtime", ticket: Ticket) -> str:
    """Post the inquiry's triage card, or update it in place when it exists.

    Returns what it did (``posted``, ``found``, ``updated``, ``folded``, ``filtered``, ``logged``,
    ``skipped``).
    """
    assert ticket.inquiry_id is not None
    inquiry_id = ticket.inquiry_id
    plan = _plan_card(rt, inquiry_id)
    if plan is None:
        return "skipped"
    if plan.filtered:
        return "filtered"
    if plan.fold_into is not None:
        return _fold(rt, ticket, plan)
    if plan.card is None:
        return "skipped"
    if not rt.settings.slack_enabled:
        return _log_unposted(rt, ticket, plan)
    if not plan.channel:
        log.warning("no Slack channel for inquiry #%s: set SLACK_TRIAGE_CHANNEL", inquiry_id)
        return "skipped"
    message = render_card(rt, plan.card)
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
            if plan is None or plan.card is None or not plan.channel or plan.fold_into is not None:
                return "skipped"
            message = render_card(rt, plan.card)
    metadata = _metadata(CARD_METADATA, f"card:{plan.owner_id}", plan.owner_id)
    channel, ts = post_once(rt, ticket, plan.channel, message, metadata)
    if not _record_card(rt, plan.owner_id, channel, ts):
        log.error("inquiry #%s already had a card when %s was recorded", plan.owner_id, ts)
    return "posted"


def _fold(rt: "Runtime", ticket: Ticket, plan: _CardPlan) -> str:
    """Fold a burst inquiry into its sender's earlier card: one card, one thread."""
    assert plan.fold_into is not None
    owner_id, channel, ts = plan.fold_into
    with rt.db.read_session() as session:
        card = Q.card_data(session, plan.inquiry_id, with_folded=False)
        latest = Q.latest_inbound(session, plan.inquiry_id)
        latest_id = latest.id if latest is not None and latest.slack_ts is None else None
    if card is None:
        return "skipped"
    if rt.settings.slack_enabled:
        line = B.followup_line(inquiry_id=plan.inquiry_id, direction="inbound",
                               sender=B.sender_label(card.sender_name, card.sender_address),
                               subject=card.subject, body=card.latest_reply, show_id=True)
        metadata = _metadata(LINE_METADATA, f"fold:{plan.inquiry_id}", plan.inquiry_id)
        _, line_ts = post_once(rt, ticket, channel, line, metadata, thread_ts=ts)
        if latest_id is not None:
            _record_message_ts(rt, latest_id, line_ts)
    else:
        log.info("Slack is off; would fold inquiry #%s into the card of #%s", plan.inquiry_id, owner_id)
    _record_card(rt, plan.inquiry_id, channel, ts)
    with rt.db.session() as session:
        from intake.outbox import owe_card

        owe_card(session, owner_id)  # its card now lists one more folded inquiry
    return "folded" if rt.settings.slack_enabled else "logged"


# ---- thread lines --------------------------------------------------------------------------


def _record_message_ts(rt: "Runtime", message_id: int, ts: str) -> bool:
    with rt.db.session() as session:
        result = session.execute(
            update(Message).where(Message.id == message_id, Message.slack_ts.is_(None)).values(slack_ts=ts)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def _record_event_ts(rt: "Runtime", event_id: int, ts: str) -> bool:
    with rt.db.session() as session:
        result = session.execute(
            update(Event).where(Event.id == event_id, Event.slack_ts.is_(None)).values(slack_ts=ts)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


@dataclass
class _LinePlan:
    inquiry_id: int
    channel: str | None
    ts: str | None
    filtered: bool
    line: B.Message


def _post_line(rt: "Runtime", ticket: Ticket, plan: _LinePlan, record) -> str:
    """Post one line in the card's thread, once; a card not posted yet means "retry shortly"."""
    if plan.filtered:
        return "filtered"
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would post in the thread of inquiry #%s: %s", plan.inquiry_id, plan.line.text)
        return "logged"
    if not plan.channel or not plan.ts:
        raise Retry(f"the card of inquiry #{plan.inquiry_id} is not posted yet", after=1.0)
    metadata = _metadata(LINE_METADATA, ticket.key, plan.inquiry_id)
    _, ts = post_once(rt, ticket, plan.channel, plan.line, metadata, thread_ts=plan.ts)
    record(ts)
    return "posted"


def _plan_message_lines(rt: "Runtime", tickets: list[Ticket]) -> dict[int, _LinePlan | None]:
    """The thread line each follow-up delivery posts (None: nothing to post), read in one short
    session for all of them."""
    wanted = {t.id: int(t.args["message_id"]) for t in tickets}
    plans: dict[int, _LinePlan | None] = {}
    with rt.db.read_session() as session:
        messages = {m.id: m for m in session.scalars(
            select(Message).options(defer(Message.raw)).where(Message.id.in_(set(wanted.values()))))}
        inquiry_ids = {m.inquiry_id for m in messages.values() if m.inquiry_id is not None and not m.slack_ts}
        inquiries = {i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(inquiry_ids)))}
        filtered = Q.filtered_many(session, [i for i in inquiries.values() if not i.slack_ts])
        groups = Q.card_groups(session, [i for i in inquiries.values() if i.slack_ts])
        for ticket in tickets:
            message = messages.get(wanted[ticket.id])
            if message is None or message.slack_ts or message.inquiry_id is None:
                plans[ticket.id] = None
                continue
            inquiry = inquiries[message.inquiry_id]
            plans[ticket.id] = _LinePlan(
                inquiry.id, inquiry.slack_channel, inquiry.slack_ts, filtered=inquiry.id in filtered,
                line=B.followup_line(
                    inquiry_id=inquiry.id, direction=message.direction,
                    sender=B.sender_label(message.sender_name, message.sender_address),
                    subject=message.subject, body=message.latest_reply or message.text_body,
                    author=message.author, reopened=bool(ticket.args.get("reopened")),
                    show_id=bool(inquiry.slack_ts) and len(groups.get(inquiry.id, ())) > 1,
                ),
            )
    return plans


def _deliver_message_lines(rt: "Runtime", tickets: list[Ticket]) -> dict[int, Any]:
    """Follow-up lines for several messages: planned in one session, then posted one by one
    (a batch of follow-ups, as `intake ingest` of a mailbox makes, no longer reads each alone)."""
    outcomes: dict[int, Any] = {}
    plans = _plan_message_lines(rt, tickets)
    for ticket in tickets:
        try:
            outcomes[ticket.id] = _post_message_line(rt, ticket, plans[ticket.id])
        except Exception as exc:  # noqa: BLE001 - this line is retried; the others go on
            outcomes[ticket.id] = exc
    return outcomes


def _post_message_line(rt: "Runtime", ticket: Ticket, plan: _LinePlan | None) -> str:
    if plan is None:
        return "skipped"
    message_id = int(ticket.args["message_id"])
    return _post_line(rt, ticket, plan, lambda ts: _record_message_ts(rt, message_id, ts))


@slack_deliverer("slack.message_line", batch=_deliver_message_lines)
def deliver_message_line(rt: "Runtime", ticket: Ticket) -> str:
    """A follow-up email as a line in its card's thread (saying so when it reopened the inquiry)."""
    return _post_message_line(rt, ticket, _plan_message_lines(rt, [ticket])[ticket.id])


@slack_deliverer("slack.event_line")
def deliver_event_line(rt: "Runtime", ticket: Ticket) -> str:
    """"Who did what" in the card's thread, once per event."""
    event_id = int(ticket.args["event_id"])
    with rt.db.read_session() as session:
        event = session.get(Event, event_id)
        if event is None or event.slack_ts or event.inquiry_id is None:
            return "skipped"
        inquiry = session.get(Inquiry, event.inquiry_id)
        assert inquiry is not None
        text = None
        linked_id = (event.detail or {}).get("message_id")
        if event.kind in TEXT_EVENT_KINDS and linked_id:
            linked = session.get(Message, int(linked_id))
            text = (linked.text_body or linked.latest_reply) if linked is not None else None
        plan = _LinePlan(
            inquiry.id, inquiry.slack_channel, inquiry.slack_ts,
            filtered=not inquiry.slack_ts and Q.is_filtered(session, inquiry),
            line=B.event_line(event.kind, event.actor, event.detail, inquiry.id, text=text,
                              show_id=bool(inquiry.slack_ts) and len(Q.card_group(session, inquiry)) > 1),
        )
    return _post_line(rt, ticket, plan, lambda ts: _record_event_ts(rt, event_id, ts))


# ---- the spam and automated-mail digest ----------------------------------------------------


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


@periodic("slack.digest", every_seconds=DIGEST_EVERY_SECONDS)
def digest(rt: "Runtime") -> str:
    """Owe one card counting the spam and automated inquiries filtered since the last digest.

    The digest event is the run key: it is recorded in the same transaction as the delivery, and
    the delivery's key names the range and the hour, so two workers running this at once owe one.
    """
    with rt.db.session() as session:
        last = session.scalar(
            select(Event).where(Event.kind == DIGEST_KIND).order_by(Event.id.desc()).limit(1)
        )
        after_id = int((last.detail or {}).get("through_id", 0)) if last else 0
        since = Q.aware(last.created_at) if last else None
        items = Q.filtered_since(session, after_id)
        notes = _cap_notes(session, since)
        if not items and not notes:
            return "empty"
        counts: dict[str, int] = {}
        for inquiry in items:
            key = "spam" if inquiry.status == "spam" else (inquiry.category or "automated")
            counts[key] = counts.get(key, 0) + 1
        through_id = max((i.id for i in items), default=after_id)
        hour = utcnow().strftime("%Y%m%d%H")
        args = {"after_id": after_id, "through_id": through_id,
                "counts": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), "notes": notes}
        if not owe(session, "slack.digest", key=f"digest:{after_id}:{through_id}:{hour}", args=args):
            return "already owed"
        session.add(Event(inquiry_id=None, actor="system", kind=DIGEST_KIND,
                          detail={"after_id": after_id, "through_id": through_id, "counts": counts}))
    return "owed"


@slack_deliverer("slack.digest")
def deliver_digest(rt: "Runtime", ticket: Ticket) -> str:
    args = ticket.args
    with rt.db.read_session() as session:
        samples = Q.rows_for(Q.filtered_since(session, int(args["after_id"]), int(args["through_id"]))[:5])
    message = B.digest_card(B.DigestData(
        counts=[(str(k), int(v)) for k, v in args["counts"]], after_id=int(args["after_id"]),
        through_id=int(args["through_id"]), samples=samples, notes=list(args["notes"]),
    ))
    channel = rt.settings.slack_triage_channel
    if not (rt.settings.slack_enabled and channel):
        log.info("Slack is off; would post the digest: %s", message.text)
        return "logged"
    metadata = {"event_type": LINE_METADATA, "event_payload": {"key": ticket.key, "inquiry_id": 0}}
    post_once(rt, ticket, channel, message, metadata)
    return "posted"
