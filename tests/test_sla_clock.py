"""The response clock through the real pipeline and staff actions, on SQLite and PostgreSQL:
targets on arrival, met by a staff email reply (not a note, not the acknowledgment), paused by
waiting, restarted by the applicant's next email, stopped by closing, following reclassification,
and arrival times taken from Date: for an imported mailbox."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from intake import inquiries
from intake.models import Inquiry
from intake.outbound import send_reply
from intake.sla import clock
from intake.sla.notices import reconcile
from intake.sla.settings import SlaSettings
from tests.sla_support import H, STAFF, act, email, load, new_inquiry, ny, receive, sla_runtime, utc


def rules_of(rt) -> clock.Policy:
    return clock.policy(rt)


def state_at(rt, inquiry_id: int, when: dt.datetime) -> clock.DueState | None:
    return clock.evaluate(load(rt, inquiry_id), rules_of(rt), when)


def test_targets_by_category_in_business_time(settings, db):
    rt = sla_runtime(settings, db)
    # Friday 4 December 2026, 15:00 in New York.
    with time_machine.travel(ny(2026, 12, 4, 15), tick=False):
        press, _ = new_inquiry(rt, "tag-press", subject="Podcast interview")
        partner, _ = new_inquiry(rt, "tag-partnership", subject="Hosting fellows", sender="city@example.gov")
        general, _ = new_inquiry(rt, "tag-general", subject="Question", sender="bo@example.org")
        robot, _ = email("Out of office", "I am away.", sender="ooo@example.org",
                         headers={"Auto-Submitted": "auto-replied"})
        automated = receive(rt, robot)
    # press 4h: two hours on Friday, two on Monday; partnership 1d and general 2d likewise.
    assert utc(load(rt, press).first_response_due) == ny(2026, 12, 7, 11)
    assert utc(load(rt, partner).first_response_due) == ny(2026, 12, 7, 15)
    assert utc(load(rt, general).first_response_due) == ny(2026, 12, 8, 15)
    assert utc(load(rt, press).response_due) == utc(load(rt, press).first_response_due)
    robot_row = load(rt, automated)
    assert robot_row.status == "closed" and robot_row.first_response_due is None and robot_row.response_due is None


def test_a_staff_reply_meets_it_but_the_acknowledgment_and_a_note_do_not(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(rt, "tag-press")
    row = load(rt, inquiry_id)
    assert row.first_response_at is None  # the acknowledgment went out (logged) but does not count
    with time_machine.travel(ny(2026, 12, 7, 11), tick=False):
        act(rt, "add_note", inquiry_id, "Calling them back tomorrow")
    assert load(rt, inquiry_id).first_response_at is None
    assert state_at(rt, inquiry_id, ny(2026, 12, 7, 12, 30)).state == "due_soon"
    assert state_at(rt, inquiry_id, ny(2026, 12, 7, 11)).state == "on_track"
    assert state_at(rt, inquiry_id, ny(2026, 12, 7, 14)).state == "overdue"
    with time_machine.travel(ny(2026, 12, 7, 13, 15), tick=False):
        send_reply(rt, inquiry_id, "Happy to talk on Thursday.", STAFF)
    row = load(rt, inquiry_id)
    assert utc(row.first_response_at) == ny(2026, 12, 7, 13, 15)
    assert row.response_due is None and row.status == "waiting"  # sent (logged): waiting on them
    assert state_at(rt, inquiry_id, ny(2026, 12, 7, 15)) == clock.DueState(None, "paused")
    # A second reply keeps the first response where it was.
    with time_machine.travel(ny(2026, 12, 8, 9, 30), tick=False):
        send_reply(rt, inquiry_id, "Also: bring ID.", STAFF)
    assert utc(load(rt, inquiry_id).first_response_at) == ny(2026, 12, 7, 13, 15)


def test_waiting_pauses_and_the_applicant_reopens_it_with_a_next_target(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, first_mid = new_inquiry(rt, "tag-general")
        act(rt, "claim", inquiry_id)
        act(rt, "wait_on_applicant", inquiry_id)
    row = load(rt, inquiry_id)
    assert row.status == "waiting" and row.response_due is None
    assert state_at(rt, inquiry_id, ny(2026, 12, 20, 10)).state == "paused"  # no clock while paused
    # The applicant answers on Thursday at 16:00: a next-response target of 2 business days.
    with time_machine.travel(ny(2026, 12, 10, 16), tick=False):
        raw, _ = email("Re: A question", "Here is the document you asked for.", in_reply_to=first_mid)
        assert receive(rt, raw) == inquiry_id
    row = load(rt, inquiry_id)
    assert row.status == "open"
    assert utc(row.response_due) == ny(2026, 12, 14, 16)
    assert utc(row.first_response_due) == ny(2026, 12, 9, 10)  # kept for the reports
    assert state_at(rt, inquiry_id, ny(2026, 12, 14, 15)).state == "due_soon"


def test_a_follow_up_while_a_reply_is_owed_keeps_the_earlier_target(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, mid = new_inquiry(rt, "tag-press")
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        raw, _ = email("Re: A question", "Any news? tag-press", in_reply_to=mid)
        receive(rt, raw)
        robot, _ = email("Re: A question", "Auto reply", in_reply_to=mid, headers={"Auto-Submitted": "auto-replied"})
        receive(rt, robot)
    assert utc(load(rt, inquiry_id).response_due) == ny(2026, 12, 7, 14)


def test_an_automated_reply_does_not_reopen_the_clock(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, mid = new_inquiry(rt, "tag-general")
        act(rt, "wait_on_applicant", inquiry_id)
        robot, _ = email("Re: A question", "I am out of the office.", in_reply_to=mid,
                         headers={"Auto-Submitted": "auto-replied"})
        receive(rt, robot)
    row = load(rt, inquiry_id)
    assert row.status == "waiting" and row.response_due is None


def test_closing_stops_it_and_staff_reopening_an_unanswered_one_owes_a_reply_from_then(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(rt, "tag-press")
        act(rt, "close", inquiry_id)
    assert load(rt, inquiry_id).response_due is None
    assert state_at(rt, inquiry_id, ny(2026, 12, 9, 10)) is None  # closed: not listed
    with time_machine.travel(ny(2026, 12, 9, 10), tick=False):
        act(rt, "reopen", inquiry_id)
        with rt.db.session() as session:
            assert reconcile(session, rules_of(rt), ny(2026, 12, 9, 10)) == 1
    row = load(rt, inquiry_id)
    assert utc(row.response_due) == ny(2026, 12, 9, 14)
    assert utc(row.first_response_due) == ny(2026, 12, 7, 14)  # the original target, for reports


def test_reclassifying_an_unanswered_inquiry_moves_its_target(settings, db):
    rt = sla_runtime(settings, db)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(rt, "tag-general")
    assert utc(load(rt, inquiry_id).response_due) == ny(2026, 12, 9, 10)
    with time_machine.travel(ny(2026, 12, 7, 11), tick=False):
        act(rt, "reclassify", inquiry_id, "press")
        with rt.db.session() as session:
            reconcile(session, rules_of(rt), ny(2026, 12, 7, 11))
    row = load(rt, inquiry_id)
    assert utc(row.response_due) == utc(row.first_response_due) == ny(2026, 12, 7, 14)
    # Marked spam stops it; restored as not spam it owes a reply from the restoring moment.
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        act(rt, "mark_spam", inquiry_id)
        assert load(rt, inquiry_id).response_due is None
        act(rt, "mark_not_spam", inquiry_id)
        with rt.db.session() as session:
            reconcile(session, rules_of(rt), ny(2026, 12, 7, 12))
    assert utc(load(rt, inquiry_id).response_due) == ny(2026, 12, 7, 16)


def test_waiting_is_only_for_open_inquiries(settings, db):
    rt = sla_runtime(settings, db)
    inquiry_id, _ = new_inquiry(rt)
    act(rt, "close", inquiry_id)
    with pytest.raises(inquiries.InvalidAction):
        act(rt, "wait_on_applicant", inquiry_id)


def test_received_from_date_uses_the_message_date(settings, db):
    rt = sla_runtime(settings, db)
    sent = ny(2026, 11, 2, 9, 30)
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        old, _ = email("Old question", "tag-press from last month", date=sent)
        imported = receive(rt, old, meta=dict(inquiries.ARRIVAL_FROM_DATE))
        same, _ = email("Old question again", "tag-press from last month", date=sent, sender="b@example.org")
        live = receive(rt, same)
        future, _ = email("Wrong clock", "tag-press", date=ny(2027, 1, 1), sender="c@example.org")
        clamped = receive(rt, future, meta=dict(inquiries.ARRIVAL_FROM_DATE))
    assert utc(load(rt, imported).received_at) == sent
    assert utc(load(rt, imported).first_response_due) == ny(2026, 11, 2, 13, 30)
    assert utc(load(rt, live).received_at) == ny(2026, 12, 7, 10)  # the default is unchanged
    assert utc(load(rt, clamped).received_at) == ny(2026, 12, 7, 10)


def test_evaluate_states_in_memory():
    rules = clock.Policy.from_settings(SlaSettings.from_config({"timezone": "America/New_York"}))
    due = ny(2026, 12, 7, 14)
    running = Inquiry(status="open", response_due=due, first_response_due=due)
    assert clock.evaluate(running, rules, ny(2026, 12, 7, 9)).state == "on_track"
    assert clock.evaluate(running, rules, ny(2026, 12, 7, 12)).state == "due_soon"
    assert clock.evaluate(running, rules, due).state == "overdue"
    # Two business hours before a Monday 10:00 target is Friday 16:00.
    monday = Inquiry(status="new", response_due=ny(2026, 12, 7, 10))
    assert clock.evaluate(monday, rules, ny(2026, 12, 4, 15, 59)).state == "on_track"
    assert clock.evaluate(monday, rules, ny(2026, 12, 4, 16)).state == "due_soon"
    answered = Inquiry(status="open", response_due=None, first_response_due=due, first_response_at=due - H)
    assert clock.evaluate(answered, rules, due) == clock.DueState(due.astimezone(dt.timezone.utc), "met")
    assert clock.evaluate(Inquiry(status="open", response_due=None), rules, due) is None
    assert clock.evaluate(Inquiry(status="spam", response_due=due), rules, due) is None
