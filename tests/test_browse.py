"""`intake list` and `intake show` for a person: the pure builders, then the commands on both
databases (the JSON shapes are the contract and stay as they were)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from intake.browse import (
    DEFAULT_LIMIT,
    REVIEW_LEGEND,
    SUBJECT_WIDTH,
    Outbound,
    detail_lines,
    format_time,
    list_table,
    printable,
    shorten,
    shorten_address,
)
from intake.cli import main
from intake.db import Database
from intake.models import Message
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
MICROSECONDS = re.compile(r"\d\d:\d\d:\d\d\.\d")
SUMMARY_KEYS = {"id", "status", "category", "confidence", "needs_review", "subject", "from", "name",
                "assignee", "language", "received_at"}


# --- pure builders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "width", "expected"),
    [
        ("dreyes@cityofriverton.gov", 30, "dreyes@cityofriverton.gov"),
        ("pnatarajan@dailyledger.example.com", 30, "pnata…@dailyledger.example.com"),
        ("a@mail.very-long-subdomain.cityofriverton.gov", 20, "….cityofriverton.gov"),
        ("no-at-sign-but-very-long-indeed", 10, "…ng-indeed"),
    ],
)
def test_a_cut_address_keeps_its_domain_and_shows_the_cut(address, width, expected):
    cut = shorten_address(address, width)
    assert cut == expected
    assert len(cut) <= width
    if cut != address:
        assert "…" in cut


def test_shorten_marks_every_cut():
    assert shorten("short", 10) == "short"
    assert shorten("x" * 11, 10) == "x" * 9 + "…"
    assert len(shorten("y" * 500, SUBJECT_WIDTH)) == SUBJECT_WIDTH


def test_printable_defuses_terminal_escapes_and_bidi_overrides():
    hostile = "Invoice\x1b[31m red\x1b[0m\r\nBcc: x\u202egnp.exe\tend"
    shown = printable(hostile)
    assert "\x1b" not in shown and "\r" not in shown and "\n" not in shown and "\u202e" not in shown
    assert "Invoice" in shown and "end" in shown and "\t" not in shown
    assert printable("Consulta sobre la convocatoria — ñandú 日本") == "Consulta sobre la convocatoria — ñandú 日本"


def test_format_time_drops_microseconds_and_keeps_the_offset():
    assert format_time("2026-11-03T09:12:00.123456-05:00") == "2026-11-03 09:12:00 -0500"
    assert format_time("2026-12-01T21:27:56.806000") == "2026-12-01 21:27:56 +0000"  # naive: stored as UTC
    assert format_time(None) == "-"


def row(n: int, **over) -> dict:
    base = {"id": n, "status": "new", "category": "press", "confidence": 0.62, "needs_review": False,
            "subject": f"Subject {n}", "from": f"person{n}@example.org", "name": None}
    return {**base, **over}


def test_list_table_has_a_header_a_legend_only_when_marked_and_the_count_left_out():
    lines = list_table([row(2, needs_review=True), row(1)], more=7)
    assert lines[0].split() == ["ID", "STATUS", "CATEGORY", "CONF", "FROM", "SUBJECT"]
    assert "press*" in lines[1] and "press*" not in lines[2]
    assert REVIEW_LEGEND in lines
    assert lines[-1].startswith("7 more; use --limit")
    plain = list_table([row(1)])
    assert REVIEW_LEGEND not in plain and not any("more;" in line for line in plain)
    assert list_table([]) == ["no inquiries"]


def test_list_table_cuts_long_fields_visibly_and_aligns_columns():
    long_from = "someone.with.a.long.name@a-long-department.cityofriverton.gov"
    lines = list_table([row(12, subject="S" * 200, **{"from": long_from}), row(3)])
    assert "…" in lines[1]
    assert "cityofriverton.gov" in lines[1]  # the domain's end survives the cut
    assert lines[1].endswith("S" * (SUBJECT_WIDTH - 1) + "…")
    assert lines[0].index("FROM") == lines[2].index("person3@") == lines[1].index("…")
    assert lines[0].index("SUBJECT") == lines[2].index("Subject 3")
    assert len(lines[1].split("  ")[-1]) == SUBJECT_WIDTH


def detail(**over) -> dict:
    base = {
        "id": 4, "subject": "Hosting fellows", "name": "Dana Reyes", "from": "dreyes@cityofriverton.gov",
        "status": "new", "assignee": None, "category": "partnership", "confidence": 0.91,
        "needs_review": False, "language": "en", "received_at": "2026-12-01T21:27:56.806000+00:00",
        "classifications": [], "events": [
            {"actor": "system", "kind": "ack_sent", "detail": {"message_id": 9}, "at": "2026-12-01T21:27:57.1+00:00"},
        ],
        "messages": [
            {"id": 8, "direction": "inbound", "kind": "email", "from": "dreyes@cityofriverton.gov",
             "to": "fellows@example.org", "subject": "Hosting fellows", "date": "2026-11-03T09:12:00-05:00",
             "received_at": "2026-12-01T21:27:56.806000+00:00", "size": 900, "sha256": "ab" * 32,
             "parse_status": "parsed", "parse_error": None, "latest_reply": "Could the city host two fellows?",
             "state": "processed"},
            {"id": 9, "direction": "outbound", "kind": "acknowledgment", "from": "intake@intake.invalid",
             "to": "dreyes@cityofriverton.gov", "subject": "Re: Hosting fellows [#4]", "date": None,
             "received_at": "2026-12-01T21:27:57.000001+00:00", "size": 700, "sha256": "cd" * 32,
             "parse_status": "parsed", "parse_error": None, "latest_reply": None, "state": "sent"},
        ],
    }
    return {**base, **over}


def test_detail_shows_when_intake_got_it_and_the_emails_date_to_the_second():
    lines = detail_lines(detail(), {9: Outbound("Thank you for writing.", logged_only=False)})
    text = "\n".join(lines)
    assert "received  2026-12-01 21:27:56 +0000" in text
    assert "dated     2026-11-03 09:12:00 -0500" in text
    assert not MICROSECONDS.search(text)
    assert "Could the city host two fellows?" in text


def test_a_logged_acknowledgment_shows_its_body_and_says_it_was_not_sent():
    logged = "\n".join(detail_lines(detail(), {9: Outbound("Thank you for writing.\nWe read every message.", True)}))
    assert "logged, not sent (SMTP_URL is unset)" in logged
    assert "    We read every message." in logged
    assert "ack_sent (logged, not sent)" in logged
    sent = "\n".join(detail_lines(detail(), {9: Outbound("Thank you for writing.", False)}))
    assert "not sent" not in sent and ": sent" in sent


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
def env(db_url):
    return {"DATABASE_URL": db_url, "INTAKE_CONFIG": "", "SLACK_BOT_TOKEN": "", "SMTP_URL": ""}


@pytest.fixture
def run(env):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def message(n: int, subject: str = "How do I apply?") -> bytes:
    return (f"From: Applicant {n} <applicant{n}@example.org>\r\nTo: fellows@example.org\r\n"
            f"Subject: {subject} ({n})\r\nMessage-ID: <browse-{n}@example.org>\r\n"
            f"Date: Tue, 03 Nov 2026 09:{n % 60:02d}:00 -0500\r\n\r\n"
            f"When is the fellowship application deadline? Thanks, applicant {n}\r\n").encode()


def test_list_defaults_to_fifty_says_how_many_more_and_limit_zero_shows_all(run, tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    for n in range(DEFAULT_LIMIT + 3):
        (folder / f"{n:03d}.eml").write_bytes(message(n))
    assert run("ingest", "--json", str(folder)).exit_code == 0
    default = run("list").stdout.splitlines()
    assert default[0].split()[:3] == ["ID", "STATUS", "CATEGORY"]
    assert sum(line.startswith("#") for line in default) == DEFAULT_LIMIT
    assert default[-1] == "3 more; use --limit N to show more (--limit 0 shows all)"
    every = run("list", "--limit", "0").stdout
    assert sum(line.startswith("#") for line in every.splitlines()) == DEFAULT_LIMIT + 3
    assert "more;" not in every
    two = run("list", "--limit", "2").stdout.splitlines()
    assert sum(line.startswith("#") for line in two) == 2 and two[-1].startswith(f"{DEFAULT_LIMIT + 1} more")
    # --json is the contract: every inquiry unless --limit says otherwise, the same keys as before.
    listed = json.loads(run("list", "--json").stdout)
    assert len(listed) == DEFAULT_LIMIT + 3
    assert set(listed[0]) == SUMMARY_KEYS
    assert len(json.loads(run("list", "--json", "--limit", "5").stdout)) == 5


def test_list_filters_count_what_they_filter(run):
    run("ingest", str(EXAMPLES))
    spam = run("list", "--status", "spam", "--limit", "1").stdout
    assert "more;" not in spam  # one spam example: nothing left out
    automated = json.loads(run("list", "--json", "--category", "automated").stdout)
    assert automated and all(r["category"] == "automated" for r in automated)


def test_list_category_is_validated_like_status(run):
    bogus = run("list", "--category", "bogus")
    assert bogus.exit_code == 2
    assert "Invalid value for '--category': 'bogus' is not one of" in bogus.output
    assert "'applicant_status'" in bogus.output and "'automated'" in bogus.output
    status = run("list", "--status", "bogus")
    assert status.exit_code == 2 and "Invalid value for '--status'" in status.output


def test_every_list_and_show_option_has_help(run):
    for command in ("list", "show", "ingest"):
        text = run(command, "--help").stdout
        options = [line for line in text.split("Options:")[1].splitlines() if line.strip().startswith("--")]
        assert options, command
        for line in options:
            name, _, rest = line.strip().partition("  ")
            described = rest.strip() or text.split(line, 1)[1].splitlines()[1].strip()
            assert described, f"{command} {name} has no help"


def test_list_marks_review_and_explains_the_mark(env, tmp_path):
    """With a review threshold no verdict reaches, every inquiry is marked and the legend shown."""
    config = tmp_path / "intake.toml"
    config.write_text("[classifier]\nreview_threshold = 1.01\n", encoding="utf-8")
    env = {**env, "INTAKE_CONFIG": str(config)}
    runner = CliRunner()
    runner.invoke(main, ["ingest", str(EXAMPLES / "03-press-request.eml")], env=env, catch_exceptions=False)
    [listed] = json.loads(runner.invoke(main, ["list", "--json"], env=env).stdout)
    assert listed["needs_review"] is True
    output = runner.invoke(main, ["list"], env=env).stdout.splitlines()
    assert f"{listed['category']}*" in output[1]
    assert output[-1] == REVIEW_LEGEND


def test_show_an_acknowledgment_logged_without_smtp(run, db_url):
    ingested = json.loads(run("ingest", "--json", str(EXAMPLES / "02-city-partnership.eml")).stdout)
    inquiry = ingested["inquiry"]
    shown = run("show", str(inquiry)).stdout
    assert "logged, not sent (SMTP_URL is unset)" in shown
    # Mail with no sender authentication (a file ingested by hand) is acknowledged without quoting
    # its subject back (intake/outbound/acknowledge.py): only the keyed reference is shown.
    assert f"Subject: Re: Your inquiry [#{inquiry}-" in shown
    assert "ack_sent (logged, not sent)" in shown
    assert not MICROSECONDS.search(shown)
    detail_json = json.loads(run("show", "--json", str(inquiry)).stdout)
    first = detail_json["messages"][0]
    assert f"received  {format_time(detail_json['received_at'])}  (when intake got it)" in shown
    assert f"dated     {format_time(first['date'])}  (the email's Date header)" in shown
    assert format_time(first["date"]) == "2026-11-17 20:03:10 +0000"  # 14:03:10 -0600, kept in UTC
    ack = [m for m in detail_json["messages"] if m["kind"] == "acknowledgment"]
    assert ack and ack[0]["state"] == "sent"  # the JSON contract is unchanged
    db = Database(db_url)
    try:
        with db.session() as session:
            body = session.get(Message, ack[0]["id"]).text_body
    finally:
        db.dispose()
    for line in body.strip().splitlines()[:5]:
        assert f"    {line}".rstrip() in shown.splitlines()


def test_list_on_an_empty_database(run):
    result = run("list")
    assert result.exit_code == 0 and result.stdout == "no inquiries\n"
    assert json.loads(run("list", "--json").stdout) == []
