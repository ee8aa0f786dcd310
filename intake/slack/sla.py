"""How the outbox delivers what the SLA loop owes staff (``intake.sla``): reminders and
escalations in the card's thread, the daily digest, the weekly report and its chart.

Same shape as the other Slack deliverers (intake/slack/deliveries.py): read in one short session,
talk to Slack with no transaction open, post through ``post_once`` (an earlier attempt's post is
found by its metadata instead of being repeated). A reminder whose target changed in the meantime
(answered, paused, closed, given a new target, or already past) is dropped as ``stale``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, Callable

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from intake.models import Inquiry, utcnow
from intake.outbox import Retry, Ticket, owe
from intake.sla import clock, digest, notices, report, schedule
from intake.sla.calendar import as_utc
from intake.slack import blocks as B
from intake.slack import queries as Q
from intake.slack.client import slack_client
from intake.slack.deliveries import LINE_METADATA, post_once, slack_deliverer

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)

WEEKLY_CHART = "slack.sla_weekly_chart"
DIGEST_ROWS = 30


def report_channel(rt: "Runtime") -> str | None:
    """``[sla] channel``, else the triage channel."""
    return clock.policy(rt).settings.channel or rt.settings.slack_triage_channel


def _metadata(ticket: Ticket, inquiry_id: int | None = None) -> dict[str, Any]:
    return {"event_type": LINE_METADATA, "event_payload": {"key": ticket.key, "inquiry_id": inquiry_id or 0}}


# ---- reminders and escalations -------------------------------------------------------------

NoticeBuilder = Callable[[Inquiry, Any, bool], B.Message]


def _thread_notice(rt: "Runtime", ticket: Ticket, build: NoticeBuilder, *, before_due: bool) -> str:
    """Post one notice in the card's thread, if the target it is about still stands."""
    due = dt.datetime.fromisoformat(ticket.args["due_at"])
    sla = clock.policy(rt).settings
    if before_due and utcnow() >= due:
        return "stale"  # a reminder that comes after its target: the escalation says it instead
    with rt.db.read_session() as session:
        inquiry = session.get(Inquiry, ticket.inquiry_id)
        if inquiry is None or inquiry.status not in clock.RUNNING or inquiry.response_due is None \
                or as_utc(inquiry.response_due) != due:
            return "stale"
        if not inquiry.slack_ts and Q.is_filtered(session, inquiry):
            return "filtered"
        show_id = bool(inquiry.slack_ts) and len(Q.card_group(session, inquiry)) > 1
        line = build(inquiry, sla, show_id)
        inquiry_id, channel, ts = inquiry.id, inquiry.slack_channel, inquiry.slack_ts
    if not rt.settings.slack_enabled:
        log.info("Slack is off; would post in the thread of inquiry #%s: %s", inquiry_id, line.text)
        return "logged"
    if not channel or not ts:
        raise Retry(f"the card of inquiry #{inquiry_id} is not posted yet", after=5.0)
    post_once(rt, ticket, channel, line, _metadata(ticket, inquiry_id), thread_ts=ts)
    return "posted"


@slack_deliverer(notices.REMINDER)
def deliver_reminder(rt: "Runtime", ticket: Ticket) -> str:
    return _thread_notice(rt, ticket, lambda inquiry, sla, show_id: B.sla_reminder_line(
        inquiry_id=inquiry.id, due_at=as_utc(inquiry.response_due), assignee=inquiry.assignee,
        oncall_group=sla.oncall_usergroup, show_id=show_id), before_due=True)


@slack_deliverer(notices.ESCALATION)
def deliver_escalation(rt: "Runtime", ticket: Ticket) -> str:
    return _thread_notice(rt, ticket, lambda inquiry, sla, show_id: B.sla_escalation_line(
        inquiry_id=inquiry.id, due_at=as_utc(inquiry.response_due), assignee=inquiry.assignee,
        escalation_group=sla.escalation_usergroup, oncall_group=sla.oncall_usergroup, show_id=show_id),
        before_due=False)


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


def _post(rt: "Runtime", ticket: Ticket, message: B.Message) -> tuple[str, str] | None:
    """Post to the report channel once; None when Slack is off (logged instead)."""
    channel = report_channel(rt)
    if not rt.settings.slack_enabled or not channel:
        log.info("Slack is off; would post: %s", message.text)
        return None
    return post_once(rt, ticket, channel, message, _metadata(ticket))


@slack_deliverer(schedule.DIGEST)
def deliver_digest(rt: "Runtime", ticket: Ticket) -> str:
    """Overdue, unassigned and long-waiting inquiries, oldest first; nothing on a quiet day."""
    sla = clock.policy(rt).settings
    now = utcnow()
    with rt.db.read_session() as session:
        overdue = Q.rows_for(digest.overdue(session, now, DIGEST_ROWS))
        unassigned = Q.unassigned_rows(session, limit=DIGEST_ROWS)
        waiting = Q.rows_for(digest.waiting_too_long(session, now, sla.waiting_days, DIGEST_ROWS))
        cards = _cards(session, {r.inquiry_id for r in [*overdue, *unassigned, *waiting]})
    message = B.sla_digest(
        overdue=_with_links(rt, overdue, cards), unassigned=_with_links(rt, unassigned, cards),
        waiting=_with_links(rt, waiting, cards), waiting_days=sla.waiting_days,
    )
    if message is None:
        return "quiet"
    return "posted" if _post(rt, ticket, message) else "logged"


# ---- the weekly report ---------------------------------------------------------------------


def _period(ticket: Ticket) -> tuple[dt.date, dt.date]:
    return dt.date.fromisoformat(ticket.args["since"]), dt.date.fromisoformat(ticket.args["until"])


def weekly_figures(rt: "Runtime", since: dt.date, until: dt.date) -> tuple[report.Report, B.WeeklyReportData]:
    rules = clock.policy(rt)
    with rt.db.read_session() as session:
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


@slack_deliverer(schedule.WEEKLY)
def deliver_weekly_report(rt: "Runtime", ticket: Ticket) -> str:
    """The figures as a message; then its chart is owed as a delivery of its own, so a retry of
    either step never repeats the other."""
    since, until = _period(ticket)
    _, data = weekly_figures(rt, since, until)
    posted = _post(rt, ticket, B.sla_weekly_report(data))
    if posted is None:
        return "logged"
    channel, ts = posted
    with rt.db.session() as session:
        owe(session, WEEKLY_CHART, key=f"sla.weekly_chart:{ticket.args['since']}",
            args={**ticket.args, "channel": channel, "thread_ts": ts})
    return "posted"


@slack_deliverer(WEEKLY_CHART)
def deliver_weekly_chart(rt: "Runtime", ticket: Ticket) -> str:
    """The chart as a PNG in the report's thread, through files_upload_v2 (scope ``files:write``)."""
    from intake.sla.chart import render_png

    since, until = _period(ticket)
    figures, _ = weekly_figures(rt, since, until)
    png = render_png(figures, rt.settings.category_names)
    slack_client(rt).files_upload_v2(
        channel=ticket.args["channel"], thread_ts=ticket.args["thread_ts"], file=png,
        filename=f"intake-{since.isoformat()}-{until.isoformat()}.png",
        title=f"Inquiries {since:%d %b} – {until:%d %b %Y}",
        alt_txt="Inquiries received per day by category, and business hours to the first reply",
    )
    return "uploaded"
