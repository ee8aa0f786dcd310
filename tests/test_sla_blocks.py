"""Block Kit builders for response targets (pure): the card's due field and buttons, reminder and
escalation lines, the daily digest and the weekly report. Mentions only from IDs we hold."""

from __future__ import annotations

import datetime as dt
import json

from intake.slack import blocks as B
from intake.slack.escaping import usergroup_mention

DUE = dt.datetime(2026, 12, 7, 19, 0, tzinfo=dt.timezone.utc)
def dump(value) -> str:
    return json.dumps(value, ensure_ascii=False)


HOSTILE = "Re: <!channel> <@U123> <http://evil.example|bank.com> & more"


def card(status: str = "open", **kw) -> B.CardData:
    return B.CardData(inquiry_id=12, subject=HOSTILE, sender_name="Ann", sender_address="ann@example.org",
                      status=status, category="press", **kw)


def action_ids(message: B.Message) -> list[str]:
    return [e.get("action_id") for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def row(inquiry_id: int, **kw) -> B.InquiryRow:
    return B.InquiryRow(inquiry_id=inquiry_id, subject=HOSTILE, sender="ann@example.org", status="open",
                        category="press", **kw)


def test_card_shows_when_a_reply_is_due_and_when_it_is_overdue():
    on_time = dump(B.triage_card(card(response_due=DUE), ["press"]).blocks)
    assert "*Response due*" in on_time and "Overdue" not in on_time and "<!date^1796670000^" in on_time
    late = dump(B.triage_card(card(response_due=DUE, overdue=True), ["press"]).blocks)
    assert ":rotating_light: *Overdue*" in late
    waiting = dump(B.triage_card(card("waiting", response_due=DUE), ["press"]).blocks)
    assert "Response due" not in waiting  # paused: nothing is due


def test_waiting_button_for_open_cards_and_resume_for_waiting_ones():
    assert B.A_WAITING in action_ids(B.triage_card(card("new"), []))
    waiting = B.triage_card(card("waiting"), [])
    assert B.A_WAITING not in action_ids(waiting) and B.A_REOPEN in action_ids(waiting)
    assert B.A_CLOSE in action_ids(waiting)
    assert B.A_WAITING not in action_ids(B.triage_card(card("closed"), []))


def test_usergroup_mentions_only_from_well_formed_ids():
    assert usergroup_mention("S0LEADS") == "<!subteam^S0LEADS>"
    assert usergroup_mention("!channel") == "" and usergroup_mention("S0X>|<!here") == ""
    assert usergroup_mention(None) == ""


def test_reminder_and_escalation_lines():
    mine = B.sla_reminder_line(inquiry_id=12, due_at=DUE, assignee="U200", oncall_group="S0ONCALL")
    assert "<@U200>" in mine.text and "subteam" not in mine.text and "<!date^1796670000^" in mine.text
    nobody = B.sla_reminder_line(inquiry_id=12, due_at=DUE, assignee=None, oncall_group="S0ONCALL")
    assert "<!subteam^S0ONCALL>" in nobody.text
    no_group = B.sla_reminder_line(inquiry_id=12, due_at=DUE, assignee=None, oncall_group=None)
    assert "<!" not in no_group.text.replace("<!date", "") and "Nobody has claimed it" in no_group.text
    tampered = B.sla_reminder_line(inquiry_id=12, due_at=DUE, assignee="<!channel>", oncall_group=None)
    assert "<!channel>" not in tampered.text
    up = B.sla_escalation_line(inquiry_id=12, due_at=DUE, assignee="U200", escalation_group="S0LEADS",
                               oncall_group="S0ONCALL", show_id=True)
    assert up.text.startswith("#12 · :rotating_light: *Overdue*")
    assert "<!subteam^S0LEADS>" in up.text and "<@U200>" in up.text and "S0ONCALL" not in up.text


def test_digest_lists_sections_escaped_and_is_none_on_a_quiet_day():
    assert B.sla_digest(overdue=[], unassigned=[], waiting=[], waiting_days=5) is None
    message = B.sla_digest(
        overdue=[row(1, due_at=DUE, overdue=True, permalink="https://fake.slack.com/archives/C1/p1")],
        unassigned=[row(2, permalink="javascript:alert(1)")], waiting=[], waiting_days=5)
    assert message is not None
    blob = dump(message.blocks)
    assert "Overdue (1)" in blob and "Unassigned (1)" in blob and "Waiting" not in blob
    assert "<!channel>" not in blob and "&lt;!channel&gt;" in blob
    assert "<https://fake.slack.com/archives/C1/p1|card>" in blob and "javascript:" not in blob
    assert message.text == "Daily digest: 1 overdue, 1 unassigned"
    many = B.sla_digest(overdue=[row(i) for i in range(1, 26)], unassigned=[], waiting=[], waiting_days=5)
    assert "…and 15 more" in dump(many.blocks)


def test_weekly_report_message():
    data = B.WeeklyReportData(
        since=dt.date(2026, 11, 30), until=dt.date(2026, 12, 6), received=42,
        by_category=[("application", 30), ("<!here>", 12)], median_hours=3.25, p90_hours=20.0,
        targets_met_pct=87.5, open_now=9, overdue_now=2, oldest_open=[row(7)])
    message = B.sla_weekly_report(data)
    blob = dump(message.blocks)
    assert message.text == "Weekly report: Mon 30 Nov – Sun 06 Dec 2026"
    assert "*Received*\\n42" in blob and "87.5%" in blob and "median 3.25 h" in blob
    assert "90th percentile 20 h" in blob and "9 (2 overdue)" in blob
    assert "&lt;!here&gt;" in blob and "<!here>" not in blob and "*#7*" in blob
    empty = dump(B.sla_weekly_report(B.WeeklyReportData(
        since=dt.date(2026, 11, 30), until=dt.date(2026, 12, 6), received=0, by_category=[],
        median_hours=None, p90_hours=None, targets_met_pct=None, open_now=0, overdue_now=0)).blocks)
    assert "median — · 90th percentile —" in empty and "Oldest open" not in empty


def test_home_puts_due_first_within_slack_limits():
    due = [row(i, due_at=DUE, overdue=i % 2 == 0) for i in range(1, 60)]
    view = B.home_view(B.HomeData(user_id="U100", due=due, mine=[row(100)], unassigned=[row(200)]))
    assert len(view["blocks"]) <= B.MAX_VIEW_BLOCKS
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers[1].startswith("Due and overdue (59, 29 overdue)") and headers[2] == "Mine (1)"
