"""`intake export`, `forget`, `delete` and `purge` as DESIGN.md gives them, on both databases:
the export round-trips the raw bytes, erasure asks first, purge prints its counts."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from click.testing import CliRunner

from intake.cli import main
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
AMARA = "amara.okafor@example.org"
AMARA_FILES = ("01-application-question.eml", "07-follow-up-reply.eml")


@pytest.fixture
def intake(db_url):
    runner = CliRunner()
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": "", "SLACK_BOT_TOKEN": "", "SMTP_URL": "",
           "INTAKE_SECRET_KEY": ""}

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    assert invoke("ingest", str(EXAMPLES)).exit_code == 0
    return invoke


def test_export_round_trips_the_raw_bytes(intake, tmp_path):
    target = tmp_path / "amara.json"
    target.write_text("an older export, readable by all")
    target.chmod(0o644)
    result = intake("export", "Amara Okafor <AMARA.OKAFOR@example.org>", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["format"] == "intake.subject-access/1" and document["address"] == AMARA
    assert document["contact"]["name"] == "Amara Okafor"
    inbound = [m for i in document["inquiries"] for m in i["messages"] if m["direction"] == "inbound"]
    exported = {base64.b64decode(m["raw_base64"]) for m in inbound}
    assert exported == {(EXAMPLES / name).read_bytes() for name in AMARA_FILES}
    inquiry = document["inquiries"][0]
    assert inquiry["classifications"] and inquiry["events"]
    # Our acknowledgment to her is hers too (outbound mail).
    assert any(m["direction"] == "outbound" and m["to"] == AMARA for m in inquiry["messages"])
    # Nobody else's mail is in it.
    assert all(m["from"] in (AMARA, None) or m["direction"] == "outbound" for m in inbound)


def test_export_to_stdout_is_one_json_document(intake):
    result = intake("export", "priya@nowhere.example")
    document = json.loads(result.stdout)
    assert document["inquiries"] == [] and document["contact"] is None


def test_forget_asks_and_a_no_changes_nothing(intake):
    refused = intake("forget", AMARA, input="n\n")
    assert refused.exit_code == 1
    assert "This erases everything held about amara.okafor@example.org" in refused.output
    assert json.loads(intake("export", AMARA).stdout)["inquiries"]
    done = intake("forget", AMARA, "--yes", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["erased"] is True and len(summary["inquiries"]) == 1
    assert summary["counts"]["messages"] >= 3 and len(summary["address_hmac"]) == 64
    assert json.loads(intake("export", AMARA).stdout)["inquiries"] == []
    listed = json.loads(intake("list", "--json").stdout)
    assert AMARA not in {row["from"] for row in listed} and len(listed) == 6
    again = intake("forget", AMARA, "--yes", "--json")
    assert json.loads(again.stdout)["erased"] is False


def test_forget_refuses_what_is_not_an_address(intake):
    result = intake("forget", "amara")
    assert result.exit_code == 1 and "not an email address" in result.output


def test_delete_one_inquiry(intake):
    listed = json.loads(intake("list", "--json").stdout)
    target = next(row for row in listed if row["from"] == "dreyes@cityofriverton.gov")
    assert intake("delete", str(target["id"]), input="n\n").exit_code == 1
    done = intake("delete", str(target["id"]), "--yes")
    assert done.exit_code == 0 and f"deleted inquiry #{target['id']}" in done.output
    assert target["id"] not in {row["id"] for row in json.loads(intake("list", "--json").stdout)}
    missing = intake("delete", str(target["id"]), "--yes")
    assert missing.exit_code == 1 and "no inquiry" in missing.output


def test_purge_prints_its_counts(intake):
    now = json.loads(intake("purge", "--json").stdout)
    assert now == {"deleted": 0, "redacted": 0}
    # The examples hold one spam, one out-of-office and one bounce: all three go after 30 days.
    later = "2099-01-01T00:00:00"
    dry = json.loads(intake("purge", "--json", "--dry-run", "--at", later).stdout)
    assert dry["deleted"] == 3
    assert json.loads(intake("purge", "--json", "--at", later).stdout) == dry
    assert json.loads(intake("purge", "--json", "--at", later).stdout) == {"deleted": 0, "redacted": 0}
    bad = intake("purge", "--at", "next tuesday")
    assert bad.exit_code == 2 and "not an ISO time" in bad.output
