"""The group card in the triage channel: posted once a group is big enough, updated after.

Same shape as ``slack/jobs.py``: read in one short session, talk to Slack with no transaction
open, record the card's ts with a guarded UPDATE (``... WHERE slack_ts IS NULL``) so that of
two concurrent runs one keeps its post and the other deletes its copy. Idempotent: a retry
updates the card it finds. Once the transactional outbox lands this becomes a deliverer and
``groups.refresh`` owes it in the refresh's own transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update

from intake.grouping.config import GroupingConfig
from intake.grouping.store import groups
from intake.jobs import job
from intake.models import Contact, Inquiry, InquiryGroup
from intake.slack import group_blocks as G
from intake.slack.client import channel_throttle, slack_client
from intake.slack.jobs import GONE_ERRORS, POST_OPTIONS, _suggest, channel_for

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)


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
    with rt.db.session() as session:
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
    suggestion = _suggest(rt, label, category) if members else None
    data = G.GroupCardData(group_id, label, category, topics, members, suggestion, answered_by, dissolved)
    return data, channel, ts


def _record(rt: "Runtime", group_id: int, channel: str, ts: str) -> bool:
    with rt.db.session() as session:
        return session.execute(
            update(InquiryGroup).where(InquiryGroup.id == group_id, InquiryGroup.slack_ts.is_(None))
            .values(slack_channel=channel, slack_ts=ts)
        ).rowcount == 1


@job("slack.sync_group_card")
def sync_group_card(rt: "Runtime", group_id: int) -> str:
    """Post the group's card once it has ``[groups] card_size`` people, or update it."""
    found = group_card_data(rt, group_id)
    if found is None:
        return "skipped"
    data, channel, ts = found
    config = GroupingConfig.from_settings(rt.settings)
    if not ts and (data.dissolved or len(data.members) < config.card_size):
        return "skipped"  # too small for a card, and none to update
    message = G.group_card(data)
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would %s the card of group %s: %s", "update" if ts else "post", group_id, message.text)
        return "logged"
    client = slack_client(rt)
    if ts and channel:
        try:
            client.chat_update(channel=channel, ts=ts, parse="none", **message.as_kwargs())
            return "updated"
        except SlackApiError as exc:
            if exc.response.get("error") not in GONE_ERRORS:
                raise
            return "gone"  # someone deleted the group card; a new one would only be noise
    channel = channel_for(rt, data.category)
    if not channel:
        log.warning("no Slack channel for group %s: set SLACK_TRIAGE_CHANNEL", group_id)
        return "skipped"
    channel_throttle(rt).wait(channel)
    resp = client.chat_postMessage(channel=channel, **POST_OPTIONS, **message.as_kwargs())
    if not _record(rt, group_id, resp["channel"], resp["ts"]):
        client.chat_delete(channel=resp["channel"], ts=resp["ts"])
        return sync_group_card(rt, group_id)
    # The members' cards now have a group card to point at ("in group G").
    for member in data.members:
        rt.enqueue("slack.sync_card", member.inquiry_id)
    return "posted"
