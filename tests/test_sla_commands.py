"""`intake due`, `intake report` and `intake ingest --received-from-date` as DESIGN.md specifies
them, on the example mailbox (dates in November 2026) and the shared corpus when present."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import select

from intake.cli import main
from intake.db import Database
from intake.models import Inquiry, Message
from tests.conftest import REPO, corpus_dir
from tests.sla_support import ny, utc

EXAMPLES = REPO / "examples"
DUE_KEYS = {"id", "category", "status", "assignee", "due_at", "state"}
REPORT_KEYS = {"since", "until", "received", "by_category", "first_response", "targets_met_pct",
               "open_now", "overdue_now"}


@pytest.fixture
def run(db_url, tmp_path):
    config = tmp_path / "intake.toml"
    config.write_text('[sla]\ntimezone = "America/New_York"\n', encoding="utf-8")
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": str(config), "SLACK_BOT_TOKEN": "", "SMTP_URL": ""}
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    invoke.config = config
    return invoke


def ids_by_file(output: str) -> dict[str, int]:
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {Path(r["file"]).name: r["inquiry"] for r in rows}


@pytest.fixture
def mailbox(run):
    """The examples imported with their own dates, as an old mailbox would be (on 7 December)."""
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        result = run("ingest", "--json", "--received-from-date", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    return ids_by_file(result.output)


def due_at(run, at: str) -> dict[int, dict]:
    result = run("due", "--json", "--at", at)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert all(set(row) == DUE_KEYS for row in rows)
    return {row["id"]: row for row in rows}


def test_due_lists_open_inquiries_against_targets_from_their_own_dates(run, mailbox, db_url):
    partner, press = mailbox["02-city-partnership.eml"], mailbox["03-press-request.eml"]
    # 02 arrived Tue 17 Nov 14:03:10 -0600 (15:03:10 in New York): one business day later.
    # 03 arrived Wed 18 Nov 11:45 -0500: four business hours later.
    early = due_at(run, "2026-11-18T09:30:00")  # New York time: the [sla] zone
    assert early[partner]["category"] == "partnership" and early[press]["category"] == "press"
    assert early[partner]["due_at"] == utc(ny(2026, 11, 18, 15, 3, 10)).isoformat()
    assert early[press]["due_at"] == utc(ny(2026, 11, 18, 15, 45)).isoformat()
    assert early[partner]["state"] == "on_track"
    assert due_at(run, "2026-11-18T13:30:00-05:00")[partner]["state"] == "due_soon"
    later = due_at(run, "2026-11-18T20:45:00Z")  # 15:45 in New York
    assert later[press]["state"] == "overdue" and later[partner]["state"] == "overdue"
    # Spam and automated mail owe nobody a reply; a follow-up did not move the first target.
    spam, bounce = mailbox["05-spam.eml"], mailbox["08-bounce.eml"]
    assert spam not in later and bounce not in later
    database = Database(db_url)
    try:
        with database.session() as session:
            imported = session.get(Inquiry, partner)
            assert utc(imported.received_at) == utc(ny(2026, 11, 17, 15, 3, 10))
    finally:
        database.dispose()


def test_due_human_output_and_the_default_time(run, mailbox):
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        result = run("due")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines and all("overdue" in line for line in lines)
    assert f"#{mailbox['03-press-request.eml']}" in result.output


def test_report_figures_and_chart(run, mailbox, tmp_path):
    plot = tmp_path / "week.png"
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        result = run("report", "--since", "2026-11-16", "--until", "2026-11-22", "--json", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.splitlines()[0])
    assert set(data) == REPORT_KEYS and set(data["first_response"]) == {"median_hours", "p90_hours"}
    assert (data["since"], data["until"]) == ("2026-11-16", "2026-11-22")
    # Seven new inquiries that week (the follow-up of 24 November joined the first one).
    assert data["received"] == 7 == sum(data["by_category"].values())
    assert data["by_category"]["press"] == 1 and data["by_category"]["partnership"] == 1
    assert data["first_response"] == {"median_hours": None, "p90_hours": None}
    assert data["targets_met_pct"] == 0.0  # every target passed unanswered
    assert data["open_now"] == data["overdue_now"] >= 3
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        text = run("report", "--since", "2026-11-16", "--until", "2026-11-22")
    assert "7 received" in text.output and "oldest open:" in text.output
    empty = run("report", "--since", "2020-01-01", "--until", "2020-01-07", "--json")
    assert json.loads(empty.output)["received"] == 0


def test_bad_arguments_and_settings_are_explained(run):
    bad_at = run("due", "--at", "next tuesday")
    assert bad_at.exit_code == 2 and "ISO 8601" in bad_at.output
    backwards = run("report", "--since", "2026-12-10", "--until", "2026-12-01")
    assert backwards.exit_code == 1 and "starts (2026-12-10) after it ends" in backwards.output
    bad_date = run("report", "--since", "1 Dec")
    assert bad_date.exit_code == 2 and "not a date" in bad_date.output
    run.config.write_text('[sla]\ntimezone = "Eastern"\n', encoding="utf-8")
    bad_zone = run("due")
    assert bad_zone.exit_code == 1 and "IANA time zone" in bad_zone.output


def test_default_ingest_keeps_the_arrival_time(run, db_url):
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        result = run("ingest", "--json", str(EXAMPLES / "03-press-request.eml"))
    inquiry_id = ids_by_file(result.output)["03-press-request.eml"]
    database = Database(db_url)
    try:
        with database.session() as session:
            assert utc(session.get(Inquiry, inquiry_id).received_at) == utc(ny(2026, 12, 7, 12))
    finally:
        database.dispose()


@pytest.mark.corpus
def test_received_from_date_on_the_shared_corpus(run, db_url):
    folder = corpus_dir("cpython-email")
    with time_machine.travel(ny(2026, 12, 7, 12), tick=False):
        result = run("ingest", "--json", "--received-from-date", str(folder))
    assert result.exit_code == 0, result.output
    database = Database(db_url)
    checked = 0
    try:
        with database.session() as session:
            for message in session.scalars(select(Message).where(Message.direction == "inbound")):
                inquiry = session.get(Inquiry, message.inquiry_id)
                first = session.scalar(select(Message.id).where(Message.inquiry_id == inquiry.id).order_by(Message.id))
                if first != message.id:
                    continue
                parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
                try:
                    date = parsed["Date"].datetime if parsed["Date"] else None
                except (TypeError, ValueError, AttributeError):
                    date = None
                if date is None or date.tzinfo is None:
                    continue
                expected = min(utc(date), utc(ny(2026, 12, 7, 12)))
                assert utc(inquiry.received_at) == expected, message.id
                checked += 1
    finally:
        database.dispose()
    assert checked >= 5
    report = run("report", "--since", "1970-01-01", "--until", "2026-12-07", "--json")
    assert json.loads(report.output)["received"] >= checked
