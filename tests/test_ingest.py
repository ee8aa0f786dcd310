"""`intake ingest` in chunks (intake/ingest.py): each chunk stored in one transaction before any of
it is processed or reported, processed through the batch path, its deliveries handed on together.

What must hold whatever the chunking: every file gets its result, in order; a file that cannot be
parsed or processed never costs the others theirs; an interrupted run loses nothing and a rerun
stores nothing twice. Real databases (SQLite and PostgreSQL), the fake Slack Web API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from intake import ingest as importing
from intake.cli import main
from intake.models import Inquiry, Message, Receipt
from tests.conftest import REPO
from tests.fakeslack import BOT_TOKEN, TRIAGE_CHANNEL, FakeSlack

EXAMPLES = REPO / "examples"


def deep_nesting() -> bytes:
    """Mail by its header, but MIME nested past what the parser follows: unparseable."""
    raw = b"From: a@b.example\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    for i in range(2000):
        raw += f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n".encode()
    return raw


@pytest.fixture
def run(db_url):
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": "", "SLACK_BOT_TOKEN": "", "SMTP_URL": ""}

    def invoke(*args):
        return CliRunner().invoke(main, list(args), env=env)

    return invoke


def rows_of(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def counts(db_url: str) -> dict[str, int]:
    """Inbound messages (all, processed, distinct bytes) and inquiries in the database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            inbound = Message.direction == "inbound"  # acknowledgments are messages too
            return {
                "messages": conn.scalar(select(func.count()).where(inbound)),
                "processed": conn.scalar(select(func.count()).where(inbound, Message.state == "processed")),
                "inquiries": conn.scalar(select(func.count()).select_from(Inquiry)),
                "distinct_bytes": conn.scalar(select(func.count(func.distinct(Message.sha256))).where(inbound)),
            }
    finally:
        engine.dispose()


def examples_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    shutil.copytree(EXAMPLES, folder)
    return folder


def test_a_chunk_with_an_unparseable_file_stores_every_file_and_shows_the_bad_one(run, db_url, tmp_path):
    folder = examples_folder(tmp_path)
    (folder / "04b-deep.eml").write_bytes(deep_nesting())
    result = run("ingest", "--json", str(folder))
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    names = [Path(r["file"]).name for r in rows]
    assert names == sorted(p.name for p in folder.iterdir())  # one result per file, in order
    by_name = dict(zip(names, rows))
    bad = by_name["04b-deep.eml"]
    assert bad["status"] == "unparseable" and "nested too deeply" in bad["error"] and bad["inquiry"]
    assert all(r["status"] in ("new", "follow-up") and r["error"] is None for n, r in by_name.items()
               if n != "04b-deep.eml")
    assert by_name["07-follow-up-reply.eml"]["inquiry"] == by_name["01-application-question.eml"]["inquiry"]
    assert counts(db_url) == {"messages": 9, "processed": 9, "inquiries": 8, "distinct_bytes": 9}


def test_an_interrupted_ingest_loses_nothing_and_a_rerun_stores_nothing_twice(run, db_url, tmp_path, monkeypatch):
    """Chunks of three; the run dies when the second chunk (stored, committed) is being
    processed. The rerun finds six files stored: all are duplicates, the three never processed
    are processed now, and the last two are stored and processed."""
    from intake import pipeline

    folder = examples_folder(tmp_path)
    monkeypatch.setattr(importing, "CHUNK_FILES", 3)
    real = pipeline.process_batch
    calls = []

    def dies_on_the_second_chunk(rt, waiting, first_id):
        calls.append([message_id for message_id, _, _ in waiting])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(rt, waiting, first_id)

    monkeypatch.setattr(pipeline, "process_batch", dies_on_the_second_chunk)
    interrupted = run("ingest", "--json", str(folder))
    assert interrupted.exit_code != 0
    assert [r["status"] for r in rows_of(interrupted.output)] == ["new", "new", "new"]
    assert counts(db_url) == {"messages": 6, "processed": 3, "inquiries": 3, "distinct_bytes": 6}

    monkeypatch.setattr(pipeline, "process_batch", real)
    again = run("ingest", "--json", str(folder))
    assert again.exit_code == 0, again.output
    rows = rows_of(again.output)
    assert [r["status"] for r in rows[:6]] == ["duplicate"] * 6 and all(r["inquiry"] for r in rows)
    assert [r["status"] for r in rows[6:]] == ["follow-up", "new"]  # 07 continues 01's inquiry
    assert rows[6]["inquiry"] == rows[0]["inquiry"]
    assert counts(db_url) == {"messages": 8, "processed": 8, "inquiries": 7, "distinct_bytes": 8}


def test_a_message_that_cannot_be_processed_is_named_and_the_others_go_on(run, db_url, tmp_path, monkeypatch):
    """A bug that fails one message's processing: its chunk's batch is retried one by one, the
    others get their results, the command names the file and exits non-zero; the message is
    kept, and the next run processes it."""
    from intake.inquiries import processing

    folder = examples_folder(tmp_path)
    real = processing._fill_message

    def fails_for_the_press(session, message, parsed, max_attachment_bytes):
        if "press" in (parsed.subject or "").lower() or "interview" in (parsed.subject or "").lower():
            raise RuntimeError("a bug")
        return real(session, message, parsed, max_attachment_bytes)

    monkeypatch.setattr(processing, "_fill_message", fails_for_the_press)
    result = run("ingest", "--json", str(folder))
    assert result.exit_code == 1
    rows = rows_of(result.stdout)
    assert len(rows) == 7 and "03-press-request.eml" not in {Path(r["file"]).name for r in rows}
    assert "1 message(s) were stored but could not be processed" in result.stderr
    assert "03-press-request.eml (RuntimeError: a bug)" in result.stderr
    assert counts(db_url)["messages"] == 8 and counts(db_url)["processed"] == 7

    monkeypatch.setattr(processing, "_fill_message", real)
    again = run("ingest", "--json", str(folder / "03-press-request.eml"))
    assert again.exit_code == 0, again.output
    [row] = rows_of(again.stdout)
    assert row["status"] == "duplicate" and row["inquiry"]
    assert counts(db_url) == {"messages": 8, "processed": 8, "inquiries": 7, "distinct_bytes": 8}


def test_a_chunk_is_committed_in_one_transaction_before_it_is_processed(run, db_url, tmp_path, monkeypatch):
    """Every file of a chunk is stored (and its receipt written) before the first is processed."""
    from intake import pipeline

    folder = examples_folder(tmp_path)
    (folder / "notes.txt").write_bytes(b"not mail at all\n")
    real = pipeline.process_batch
    seen = []

    def looks_first(rt, waiting, first_id):
        with rt.db.read_session() as session:
            seen.append((session.scalar(select(func.count()).where(Message.direction == "inbound")),
                         session.scalar(select(func.count()).select_from(Receipt))))
        return real(rt, waiting, first_id)

    monkeypatch.setattr(pipeline, "process_batch", looks_first)
    result = run("ingest", "--json", str(folder))
    assert result.exit_code == 0, result.output
    assert seen[0] == (8, 9)  # eight messages, and a receipt for each file (the rejected one too)
    assert [r["status"] for r in rows_of(result.output)].count("rejected") == 1


def test_a_card_owed_by_an_inquiry_and_its_follow_up_is_posted_once(db_url, tmp_path):
    """The opening email and its follow-up in one run: the card is posted once, already showing
    the follow-up and the acknowledgment (sent first: the email lane goes before Slack's), and
    never updated (one message at a time it was posted, updated for the acknowledgment, updated
    for the follow-up); the follow-up is one line in its thread."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("01-application-question.eml", "07-follow-up-reply.eml"):
        shutil.copy(EXAMPLES / name, folder / name)
    config = tmp_path / "c.toml"
    config.write_text("[slack]\npost_interval_seconds = 0\n", encoding="utf-8")
    with FakeSlack() as slack:
        env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": str(config), "SMTP_URL": "",
               "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "s", "SLACK_TRIAGE_CHANNEL": TRIAGE_CHANNEL,
               "SLACK_API_URL": slack.api_url}
        result = CliRunner().invoke(main, ["ingest", "--json", str(folder)], env=env)
        assert result.exit_code == 0, result.output
        assert [r["status"] for r in rows_of(result.stdout)] == ["new", "follow-up"]
        [card] = slack.top_level(TRIAGE_CHANNEL)
        assert len(slack.calls_to("chat.postMessage", ok_only=True)) == 2  # the card, the line
        assert len(slack.calls_to("chat.update")) == 0
        assert "acknowledged by email" in json.dumps(card["blocks"]), card["blocks"]
        assert len(slack.thread(TRIAGE_CHANNEL, card["ts"])) == 1


def test_chunks_hold_at_most_their_files_and_about_their_bytes():
    items = [(importing.Item(str(n), b"x" * size, size), None) for n, size in enumerate([5, 5, 5, 20, 1, 1])]
    assert [[i.label for i, _ in c] for c in importing.chunks(items, files=2, max_bytes=12)] == [
        ["0", "1"], ["2"], ["3"], ["4", "5"]]  # a file larger than the limit is a chunk of its own
