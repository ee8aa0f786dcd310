"""Slack deliverers for what the SLA loop owes staff (``intake.sla``): reminders and escalations
in the card's thread, the daily digest, the weekly report and its chart.

Each is a delivery function ``fn(rt, delivery)`` registered for one kind (the same shape as the
outbox's deliverers). Like the other Slack jobs it reads in one short session, talks to Slack
with no transaction open, and returns what it did; raising makes it retried with backoff. A
reminder whose target changed in the meantime (the inquiry was answered, paused, closed or got a
new target) is dropped as ``stale`` instead of nagging anyone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from intake.models import Inquiry, utcnow
from intake.sla import clock, digest, notices, owed, report, schedule
from intake.sla.calendar import as_utc
from intake.sla.owed import Delivery
from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.client import channel_throttle, slack_client
from intake.slack.jobs import POST_OPTIONS, _post_in_thread, sync_card

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

WEEKLY_CHART = "sla.weekly_chart"
DIGEST_ROWS = 30


def report_channel(rt: "Runtime") -> str | None:
    """``[sla] channel``, else the triage channel."""
    return clock.policy(rt).settings.channel or rt.settings.slack_triage_channel


# ---- reminders and escalations -------------------------------------------------------------


def _thread_notice(rt: "Runtime", delivery: Delivery, build) -> dict[str, Any]:
    """Post one notice line in the card's thread, if the target it is about still stands."""
    due = dt.datetime.fromisoformat(delivery.args["due_at"])
    rules = clock.policy(rt)
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, delivery.inquiry_id)
        if inquiry is None or inquiry.status not in clock.RUNNING or inquiry.response_due is None \
                or as_utc(inquiry.response_due) != due:
            return {"outcome": "stale"}
        if not inquiry.slack_ts and Q.is_filtered(session, inquiry):
            return {"outcome": "filtered"}
        show_id = bool(inquiry.slack_ts) and len(Q.card_group(session, inquiry)) > 1
        line = build(inquiry, rules.settings, show_id)
        inquiry_id, channel, ts = inquiry.id, inquiry.slack_channel, inquiry.slack_ts
    outcome, posted = _post_in_thread(rt, inquiry_id, channel, ts, line, lambda _ts: True)
    return {"outcome": outcome, "ts": posted}


@owed.deliverer(notices.REMINDER, deadline=dt.timedelta(hours=2))
def deliver_reminder(rt: "Runtime", delivery: Delivery) -> dict[str, Any]:
    return _thread_notice(rt, delivery, lambda inquiry, sla, show_id: B.sla_reminder_line(
        inquiry_id=inquiry.id, due_at=as_utc(inquiry.response_due), assignee=inquiry.assignee,
        oncall_group=sla.oncall_usergroup, show_id=show_id))


@owed.deliverer(notices.ESCALATION, deadline=dt.timedelta(hours=6))
def deliver_escalation(rt: "Runtime", delivery: Delivery) -> dict[str, Any]:
    result = _thread_notice(rt, delivery, lambda inquiry, sla, show_id: B.sla_escalation_line(
        inquiry_id=inquiry.id, due_at=as_utc(inquiry.response_due), assignee=inquiry.assignee,
        escalation_group=sla.escalation_usergroup, oncall_group=sla.oncall_usergroup, show_id=show_id))
    if result["outcome"] in ("posted", "logged"):
        result["card"] = sync_card(rt, delivery.inquiry_id)  # the card now shows Overdue
    return result


# ---- the daily digest ----------------------------------------------------------------------


def _with_links(rt: "Runtime", rows: list[B.InquiryRow], cards: dict[int, tuple[str, str]]) -> list[B.InquiryRow]:
    """Rows with a link to their card (chat.getPermalink, once per card)."""
    if not rt.settings.slack_enabled:
        return rows
    client = slack_client(rt)
    linked = []
    for row in rows:
        card = cards.get(row.inquiry_id)
        link = None
        if card is not None:
            try:
                link = client.chat_getPermalink(channel=card[0], message_ts=card[1]).get("permalink")
            except SlackApiError as exc:  # a deleted card: the row is still worth listing
                log.warning("no permalink for the card of #%s: %s", row.inquiry_id, exc.response.get("error"))
        linked.append(dataclasses.replace(row, permalink=link))
    return linked


def _cards(session, ids: set[int]) -> dict[int, tuple[str, str]]:
    if not ids:
        return {}
    rows = session.execute(
        select(Inquiry.id, Inquiry.slack_channel, Inquiry.slack_ts)
        .where(Inquiry.id.in_(ids), Inquiry.slack_ts.is_not(None))
    )
    return {i: (channel, ts) for i, channel, ts in rows}


def _post(rt: "Runtime", message: B.Message, **extra: Any) -> dict[str, Any]:
    channel = report_channel(rt)
    if not rt.settings.slack_enabled or not channel:
        log.info("Slack is off; would post: %s", message.text)
        return {"outcome": "logged"}
    client = slack_client(rt)
    channel_throttle(rt).wait(channel)
    resp = client.chat_postMessage(channel=channel, **POST_OPTIONS, **extra, **message.as_kwargs())
    return {"outcome": "posted", "channel": resp["channel"], "ts": resp["ts"]}


@owed.deliverer(schedule.DIGEST, deadline=dt.timedelta(hours=8))
def deliver_digest(rt: "Runtime", delivery: Delivery) -> dict[str, Any]:
    """Unassigned, overdue and long-waiting inquiries, oldest first; nothing on a quiet day."""
    sla = clock.policy(rt).settings
    now = utcnow()
    with rt.db.session() as session:
        overdue = Q.rows_for(digest.overdue(session, now, DIGEST_ROWS))
        unassigned = Q.unassigned_rows(session, limit=DIGEST_ROWS)
        waiting = Q.rows_for(digest.waiting_too_long(session, now, sla.waiting_days, DIGEST_ROWS))
        cards = _cards(session, {r.inquiry_id for r in [*overdue, *unassigned, *waiting]})
    message = B.sla_digest(
        overdue=_with_links(rt, overdue, cards), unassigned=_with_links(rt, unassigned, cards),
        waiting=_with_links(rt, waiting, cards), waiting_days=sla.waiting_days,
    )
    if message is None:
        return {"outcome": "quiet"}
    return _post(rt, message)


# ---- the weekly report ---------------------------------------------------------------------


def weekly_data(rt: "Runtime", since: dt.date, until: dt.date) -> tuple[report.Report, B.WeeklyReportData]:
    rules = clock.policy(rt)
    with rt.db.session() as session:
        figures = report.build(session, rules, since, until, utcnow())
        oldest = Q.rows_for([session.get(Inquiry, item.inquiry_id) for item in figures.oldest_open])
        cards = _cards(session, {r.inquiry_id for r in oldest})
    data = B.WeeklyReportData(
        since=figures.since, until=figures.until, received=figures.received,
        by_category=list(figures.by_category.items()), median_hours=figures.median_hours,
        p90_hours=figures.p90_hours, targets_met_pct=figures.targets_met_pct,
        open_now=figures.open_now, overdue_now=figures.overdue_now,
        oldest_open=_with_links(rt, oldest, cards),
    )
    return figures, data


@owed.deliverer(schedule.WEEKLY, deadline=dt.timedelta(hours=12))
def deliver_weekly_report(rt: "Runtime", delivery: Delivery) -> dict[str, Any]:
    """The figures as a message; its chart is owed separately, so a retry of one step never
    repeats the other."""
    since = dt.date.fromisoformat(delivery.args["since"])
    until = dt.date.fromisoformat(delivery.args["until"])
    _, data = weekly_data(rt, since, until)
    result = _post(rt, B.sla_weekly_report(data))
    if result["outcome"] == "posted":
        with rt.db.session() as session:
            owed.owe(session, WEEKLY_CHART, key=f"{WEEKLY_CHART}:{delivery.args['since']}",
                     args={**delivery.args, "channel": result["channel"], "thread_ts": result["ts"]})
    return result


@owed.deliverer(WEEKLY_CHART, deadline=dt.timedelta(hours=12))
def deliver_weekly_chart(rt: "Runtime", delivery: Delivery) -> dict[str, Any]:
    """The chart as a PNG in the report's thread, through files_upload_v2 (``files:write``)."""
    from intake.sla.chart import render_png

    since = dt.date.fromisoformat(delivery.args["since"])
    until = dt.date.fromisoformat(delivery.args["until"])
    figures, _ = weekly_data(rt, since, until)
    png = render_png(figures, rt.settings.category_names)
    resp = slack_client(rt).files_upload_v2(
        channel=delivery.args["channel"], thread_ts=delivery.args["thread_ts"], file=png,
        filename=f"intake-{since.isoformat()}-{until.isoformat()}.png",
        title=f"Inquiries {since:%d %b} – {until:%d %b %Y}",
        alt_txt="Inquiries received per day by category, and business hours to the first reply",
    )
    file = resp.get("file") or {}
    return {"outcome": "uploaded", "file": file.get("id")}
