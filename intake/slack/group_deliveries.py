"""How the outbox delivers a group card: posted once a group is big enough, updated after.

The delivery ``slack.group_card`` (key ``group_card:<id>``, coalescing: a group that changes
twice while Slack is slow is drawn once more, not forgotten) is owed by ``intake.grouping`` in
the transaction that changed the group. The deliverer follows the shape of
``slack/deliveries.py``: read in one short session, call Slack with no transaction open, then
record the card's ts with a guarded UPDATE (``... WHERE slack_ts IS NULL``); the card carries
message metadata, so an attempt after an ambiguous failure finds it instead of posting twice.
Recording the ts also owes the members' triage cards, which then say "in group G".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update

from intake.grouping.config import GroupingConfig
from intake.grouping.store import GROUP_CARD, groups
from intake.models import Contact, Inquiry, InquiryGroup
from intake.outbox import Ticket, owe_card
from intake.slack import group_blocks as G
from intake.slack.client import slack_client
from intake.slack.deliveries import GONE_ERRORS, channel_for, post_once, slack_deliverer, suggestion_for_card

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

GROUP_METADATA = "intake_group"


def workspace_url(rt: "Runtime") -> str | None:
    """The workspace's base URL (auth.test, once per process), for links to member cards."""
    def fetch(r: "Runtime") -> str | None:
        try:
            return slack_client(r).auth_test().get("url")
        except SlackApiError as exc:
            log.warning("auth.test failed (%s); group cards list members without links", exc.response.get("error"))
            return None

    return rt.service("slack.workspace_url", fetch)


def group_card_data(rt: "Runtime", group_id: int) -> tuple[G.GroupCardData, str | None, str | None] | None:
    """The card's data and where the card is (channel, ts), or None for an unknown group."""
    with rt.db.read_session() as session:
        group = session.get(InquiryGroup, group_id)
        if group is None:
            return None
        view = groups(session, ids=[group_id])
        member_ids = list(view[0].inquiries) if view else []
        rows = session.execute(
            select(Inquiry.id, Inquiry.subject, Inquiry.slack_channel, Inquiry.slack_ts, Contact.address, Contact.name)
            .outerjoin(Contact, Inquiry.contact_id == Contact.id)
            .where(Inquiry.id.in_(member_ids)).order_by(Inquiry.id)
        ).all()
        label, category, topics = group.label, group.category, tuple(group.topics or ())
        answered_by, dissolved = group.answered_by, group.dissolved_at is not None
        channel, ts = group.slack_channel, group.slack_ts
    base = workspace_url(rt) if rt.settings.slack_enabled else None
    members = [G.GroupMemberRow(r.id, f"{r.name} ({r.address})" if r.name else r.address, r.subject or "",
                                G.card_link(base, r.slack_channel, r.slack_ts)) for r in rows]
    suggestion = suggestion_for_card(rt, label, category) if members else None
    data = G.GroupCardData(group_id, label, category, topics, members, suggestion, answered_by, dissolved)
    return data, channel, ts


def _record(rt: "Runtime", group_id: int, channel: str, ts: str, members: list[int]) -> bool:
    """Store where the group card lives and owe the members' cards, in one transaction."""
    with rt.db.session() as session:
        recorded = session.execute(
            update(InquiryGroup).where(InquiryGroup.id == group_id, InquiryGroup.slack_ts.is_(None))
            .values(slack_channel=channel, slack_ts=ts).execution_options(synchronize_session=False)
        ).rowcount == 1
        if recorded:
            for inquiry_id in members:
                owe_card(session, inquiry_id)
        return recorded


@slack_deliverer(GROUP_CARD, coalesce=True)
def deliver_group_card(rt: "Runtime", ticket: Ticket) -> str:
    """Post the group's card once it has ``[groups] card_size`` people, or update it."""
    group_id = int(ticket.args["group_id"])
    found = group_card_data(rt, group_id)
    if found is None:
        return "skipped"
    data, channel, ts = found
    if not ts and (data.dissolved or len(data.members) < GroupingConfig.from_settings(rt.settings).card_size):
        return "skipped"  # too small for a card, and none to update
    message = G.group_card(data)
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would %s the card of group %s: %s", "update" if ts else "post", group_id, message.text)
        return "logged"
    if ts and channel:
        try:
            slack_client(rt).chat_update(channel=channel, ts=ts, parse="none", **message.as_kwargs())
            return "updated"
        except SlackApiError as exc:
            if exc.response.get("error") not in GONE_ERRORS:
                raise
            return "gone"  # someone deleted the group card; a new one would only be noise
    channel = channel_for(rt, data.category)
    if not channel:
        log.warning("no Slack channel for group %s: set SLACK_TRIAGE_CHANNEL", group_id)
        return "skipped"
    metadata = {"event_type": GROUP_METADATA, "event_payload": {"key": ticket.key, "group_id": group_id}}
    channel, ts = post_once(rt, ticket, channel, message, metadata)
    if not _record(rt, group_id, channel, ts, [m.inquiry_id for m in data.members]):
        log.error("group %s already had a card when %s was recorded", group_id, ts)
    return "posted"
