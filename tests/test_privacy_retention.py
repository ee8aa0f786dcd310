"""Retention at the right times, by time travel, on both databases: spam and automated mail go
after 30 days, closed inquiries are redacted after 400, an open inquiry is never touched, and the
daily job runs once a day however many workers ask."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import func, select

from intake import inquiries
from intake.config import ConfigError, Settings
from intake.models import Attachment, Classification, Contact, Event, Inquiry, Message
from intake.privacy import config, jobs, run
from tests.privacy_helpers import email, ingest

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def at(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


@pytest.fixture
def mail(rt):
    """Received on T0: spam, an auto-reply, a closed application (attachment), an open
    application, and an automated message that staff reopened."""
    ids = {}
    with time_machine.travel(T0, tick=False):
        ids["spam"] = ingest(rt, email(sender="Win Big <winner@lottery.example>", subject="You won",
                                       body="Claim your prize now at our site.")).inquiry_id
        with rt.db.session() as session:
            inquiries.mark_spam(session, ids["spam"], "U100")
        ids["auto"] = ingest(rt, email(sender="Out Of Office <ooo@agency.example>", subject="Automatic reply: away",
                                       body="I am out of the office until Monday.").replace(
            b"MIME-Version", b"Auto-Submitted: auto-replied\r\nMIME-Version")).inquiry_id
        ids["closed"] = ingest(rt, email(
            sender="Closed Applicant <closed@example.org>", subject="My application essay",
            body="Here is my essay about civic technology in rural towns.", message_id="<closed-1@example.org>",
            attachment=("essay.txt", b"An essay about civic technology in rural towns."),
        )).inquiry_id
        with rt.db.session() as session:
            inquiries.close(session, ids["closed"], "U100")
        ids["open"] = ingest(rt, email(sender="Still Waiting <open@example.org>", subject="Any news?",
                                       body="Has my application been reviewed?")).inquiry_id
        ids["reopened_auto"] = ingest(rt, email(
            sender="Robot <robot@agency.example>", subject="Automatic reply: travelling",
            body="I am travelling.").replace(b"MIME-Version", b"Auto-Submitted: auto-replied\r\nMIME-Version")).inquiry_id
        with rt.db.session() as session:
            inquiries.reopen(session, ids["reopened_auto"], "U100")
    with rt.db.session() as session:
        auto = session.get(Inquiry, ids["auto"])
        assert (auto.status, auto.category) == ("closed", "automated")
        assert session.get(Inquiry, ids["spam"]).status == "spam"
    return ids


def state(rt) -> dict[int, tuple[str, str | None, bool]]:
    with rt.db.session() as session:
        return {i.id: (i.status, i.category, i.redacted_at is not None) for i in session.scalars(select(Inquiry))}


def test_spam_and_automated_go_after_30_days_and_open_inquiries_stay(rt, mail):
    before = state(rt)
    assert run.apply_retention(rt, at(29)).as_json() == {"deleted": 0, "redacted": 0}
    assert state(rt) == before
    result = run.apply_retention(rt, at(31))
    assert result.as_json() == {"deleted": 2, "redacted": 0}
    after = state(rt)
    assert set(before) - set(after) == {mail["spam"], mail["auto"]}
    assert after[mail["open"]] == before[mail["open"]]
    assert after[mail["reopened_auto"]] == before[mail["reopened_auto"]]
    with rt.db.session() as session:
        assert session.scalar(select(Contact).where(Contact.address == "winner@lottery.example")) is None
        assert session.scalar(select(func.count(Message.id)).where(Message.sender_address == "ooo@agency.example")) == 0
        audit = session.scalars(select(Event).where(Event.kind == "retention_applied")).one()
        assert audit.detail["deleted"] == 2 and audit.actor == "system"


def test_closed_inquiries_are_redacted_after_400_days(rt, mail):
    with rt.db.session() as session:
        messages_before = session.scalar(select(func.count(Message.id)).where(Message.inquiry_id == mail["closed"]))
        closed_before = session.get(Inquiry, mail["closed"])
        received, closed_at = closed_before.received_at, closed_before.closed_at
    assert run.apply_retention(rt, at(399)).redacted == 0
    assert state(rt)[mail["closed"]] == ("closed", closed_before.category, False)
    result = run.apply_retention(rt, at(401))
    assert result.redacted == 1
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, mail["closed"])
        assert inquiry.subject == "(redacted)" and inquiry.contact_id is None
        assert inquiry.category == closed_before.category and inquiry.status == "closed"
        assert (inquiry.received_at, inquiry.closed_at) == (received, closed_at)
        messages = list(session.scalars(select(Message).where(Message.inquiry_id == mail["closed"])))
        assert len(messages) == messages_before
        for m in messages:
            assert m.raw == b"" and m.text_body is None and m.sender_address is None and m.to_address is None
            assert m.subject is None and m.recipients is None and m.size > 0 and m.sha256
        attachment = session.scalars(select(Attachment).join(Message).where(Message.inquiry_id == mail["closed"])).one()
        assert attachment.content is None and attachment.filename is None and attachment.size > 0
        assert all(c.reasons is None for c in session.scalars(
            select(Classification).where(Classification.inquiry_id == mail["closed"])))
        assert all(set(e.detail or {}) <= {"message_id", "category", "previous", "assignee", "answer"}
                   for e in session.scalars(select(Event).where(Event.inquiry_id == mail["closed"])))
        assert session.scalar(select(Contact).where(Contact.address == "closed@example.org")) is None
        # The open inquiry, as old, is untouched.
        still = session.get(Inquiry, mail["open"])
        assert still.subject == "Any news?" and still.redacted_at is None
        assert session.scalar(select(func.count(Message.id)).where(
            Message.inquiry_id == mail["open"], Message.text_body.is_not(None))) >= 1
    # Redacted once: the next run finds nothing new.
    assert run.apply_retention(rt, at(402)).redacted == 0


def test_dry_run_counts_and_changes_nothing(rt, mail):
    before = state(rt)
    assert run.apply_retention(rt, at(500), dry_run=True).as_json() == {"deleted": 2, "redacted": 1}
    assert state(rt) == before


def test_a_follow_up_keeps_an_old_closed_inquiry(rt, mail):
    with time_machine.travel(at(300), tick=False):
        ingest(rt, email(sender="Closed Applicant <closed@example.org>", subject="Re: My application essay",
                         body="One more question.", in_reply_to="<closed-1@example.org>"))
    assert state(rt)[mail["closed"]][0] == "open"  # the follow-up reopened it
    assert run.apply_retention(rt, at(401)).redacted == 0


def test_the_daily_job_runs_once_a_day(rt, mail):
    with time_machine.travel(at(31), tick=False):
        assert jobs.retention(rt) == "deleted 2, redacted 0"
        assert jobs.retention(rt) == "done today"  # a second worker, or the next hour
    with time_machine.travel(at(32), tick=False):
        assert jobs.retention(rt) == "deleted 0, redacted 0"
    with time_machine.travel(at(402), tick=False):
        assert jobs.retention(rt) == "deleted 0, redacted 1"


def test_the_daily_job_can_be_switched_off(rt, tmp_path, mail):
    path = tmp_path / "intake.toml"
    path.write_text("[retention]\nperiodic = false\n")
    rt.settings = Settings.from_env({"DATABASE_URL": rt.settings.database_url, "INTAKE_CONFIG": str(path)})
    with time_machine.travel(at(31), tick=False):
        assert jobs.retention(rt) == "off"
    assert len(state(rt)) == 5


@pytest.mark.parametrize("table, message", [
    ("delete_after_days = -1", "delete_after_days"),
    ("redact_closed_after_days = \"soon\"", "redact_closed_after_days"),
    ("delete_categories = [\"spma\"]", "spma"),
    ("periodic = \"yes\"", "periodic"),
])
def test_bad_retention_settings_are_named(tmp_path, table, message):
    path = tmp_path / "intake.toml"
    path.write_text(f"[retention]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        config.privacy_settings(Settings.from_env({"INTAKE_CONFIG": str(path)}))


def test_defaults_and_turning_a_rule_off(tmp_path):
    defaults = config.privacy_settings(Settings.from_env({}))
    assert defaults.retention.delete_categories == {"spam", "automated"}
    assert defaults.retention.delete_after == 30 * DAY and defaults.retention.redact_closed_after == 400 * DAY
    assert defaults.admin_usergroup is None
    path = tmp_path / "intake.toml"
    path.write_text("[retention]\nredact_closed_after_days = 0\n[privacy]\nadmin_usergroup = \"S0ADMIN\"\n")
    custom = config.privacy_settings(Settings.from_env({"INTAKE_CONFIG": str(path)}))
    assert custom.retention.redact_closed_after is None and custom.admin_usergroup == "S0ADMIN"
