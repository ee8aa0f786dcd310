"""The `intake` command as DESIGN.md specifies it: ingest, list, show, db upgrade."""

from __future__ import annotations

import json
import mailbox
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from intake.cli import main
from tests.conftest import REPO, corpus_dir

EXAMPLES = REPO / "examples"


@pytest.fixture
def run(db_url, tmp_path):
    runner = CliRunner()
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": "", "SLACK_BOT_TOKEN": "", "SMTP_URL": ""}

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_ingest_examples_then_list_and_show(run):
    result = run("ingest", "--json", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert len(rows) == len(list(EXAMPLES.glob("*.eml")))
    assert set(rows[0]) == {"file", "status", "inquiry", "error"}
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["07-follow-up-reply.eml"]["status"] == "follow-up"
    assert by_name["07-follow-up-reply.eml"]["inquiry"] == by_name["01-application-question.eml"]["inquiry"]
    assert all(r["status"] in ("new", "follow-up") for r in rows)

    again = run("ingest", "--json", str(EXAMPLES / "02-city-partnership.eml"))
    assert json_lines(again.output)[0]["status"] == "duplicate"
    assert json_lines(again.output)[0]["inquiry"] == by_name["02-city-partnership.eml"]["inquiry"]

    listed = json.loads(run("list", "--json").output)
    assert len(listed) == len(rows) - 1
    assert {"id", "status", "category", "subject", "from"} <= set(listed[0])
    ids = [row["id"] for row in listed]
    assert ids == sorted(ids, reverse=True)  # newest first

    categories = {row["from"]: row["category"] for row in listed}
    assert categories["dreyes@cityofriverton.gov"] == "partnership"
    assert categories["pnatarajan@dailyledger.example.com"] == "press"

    only_spam = json.loads(run("list", "--json", "--status", "spam").output)
    assert all(row["status"] == "spam" for row in only_spam)

    inquiry_id = by_name["01-application-question.eml"]["inquiry"]
    shown = json.loads(run("show", str(inquiry_id), "--json").output)
    assert {"id", "status", "category", "confidence", "assignee", "messages"} <= set(shown)
    assert shown["assignee"] is None
    inbound = [m for m in shown["messages"] if m["direction"] == "inbound"]
    assert len(inbound) == 2
    raw = (EXAMPLES / "01-application-question.eml").read_bytes()
    import hashlib

    assert inbound[0]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert inbound[0]["size"] == len(raw)

    human = run("show", str(inquiry_id))
    assert "Question about eligibility" in human.output


def test_ingest_missing_path_fails_clearly(run):
    result = CliRunner().invoke(main, ["ingest", "/no/such/place.eml"])
    assert result.exit_code != 0
    assert "no such file or directory: /no/such/place.eml" in result.output


def test_show_unknown_inquiry_is_an_error(run):
    result = run("show", "999999")
    assert result.exit_code != 0
    assert "no inquiry #999999" in result.output


def test_not_a_message_and_too_large_are_rejected(run, tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.eml").write_bytes(b"")
    (tmp_path / "in" / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (tmp_path / "in" / "big.eml").write_bytes(b"Subject: big\r\n\r\n" + b"x" * 5000)
    (tmp_path / "in" / "prose.txt").write_bytes(b"Just some words someone saved,\nwith no header at all.\n")
    (tmp_path / "in" / "settings.yml").write_bytes(b"name: intake\nversion: 1\nowner: ops\n")
    monkeypatch.setenv("INTAKE_MAX_MESSAGE_BYTES", "4096")
    result = CliRunner().invoke(
        main, ["ingest", "--json", str(tmp_path / "in")],
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "INTAKE_MAX_MESSAGE_BYTES": "4096"},
    )
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in json_lines(result.output)}
    assert rows["empty.eml"]["status"] == "rejected" and rows["empty.eml"]["error"]
    assert rows["picture.png"]["status"] == "rejected"
    assert rows["big.eml"]["status"] == "rejected" and "too large" in rows["big.eml"]["error"]
    assert rows["prose.txt"]["status"] == "rejected"
    assert rows["prose.txt"]["error"] == "not an email message: no header fields"
    # `key: value` lines look like a header block, but none of them is mail's.
    assert rows["settings.yml"]["status"] == "rejected"
    assert "no From, Message-ID, MIME-Version, or Date and Subject" in rows["settings.yml"]["error"]
    assert "(its fields: name, version, owner)" in rows["settings.yml"]["error"]
    assert all(r["inquiry"] is None for r in rows.values())
    listed = CliRunner().invoke(main, ["list", "--json"], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert json.loads(listed.output) == []


def test_the_repos_own_files_are_not_mail_and_create_nothing(run):
    """The issue's two examples: a Procfile's `key: value` lines parsed as headers and became an
    inquiry; pyproject.toml an unparseable one."""
    result = run("ingest", "--json", str(REPO / "Procfile"), str(REPO / "pyproject.toml"))
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert [r["status"] for r in rows] == ["rejected", "rejected"]
    assert "its fields: release, web, worker" in rows[0]["error"]
    assert rows[1]["error"] == "not an email message: no header fields"
    assert json.loads(run("list", "--json").output) == []
    human = run("ingest", str(REPO / "Procfile"))
    assert "rejected" in human.stdout and "not an email message" in human.stdout


def test_ingest_mbox_and_stdin(run, tmp_path):
    box = mailbox.mbox(str(tmp_path / "inbox.mbox"))
    for name in ("02-city-partnership.eml", "03-press-request.eml"):
        box.add((EXAMPLES / name).read_bytes())
    box.flush()
    box.close()
    result = run("ingest", "--json", str(tmp_path / "inbox.mbox"))
    rows = json_lines(result.output)
    assert [r["status"] for r in rows] == ["new", "new"]
    assert rows[0]["file"].endswith("inbox.mbox#1")

    piped = run("ingest", "--json", "-", input=(EXAMPLES / "06-solicitud-en-espanol.eml").read_bytes())
    rows = json_lines(piped.output)
    assert rows[0]["file"] == "-" and rows[0]["status"] == "new"
    shown = json.loads(run("show", str(rows[0]["inquiry"]), "--json").output)
    assert shown["messages"][0]["language"] == "es"


def test_hostile_inputs_each_get_a_result(run, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    header_only = b"From: a@example.org\r\nSubject: only headers\r\n"
    many = ", ".join(f"user{i}@example.org" for i in range(10_000))
    cases = {
        "header-only.eml": header_only,
        "recipients.eml": f"From: a@example.org\r\nTo: {many}\r\nSubject: hi\r\n\r\nbody\r\n".encode(),
        "subject.eml": b"From: a@example.org\r\nSubject: " + b"S" * 5000 + b"\r\n\r\nbody\r\n",
        "nul.eml": b"From: a@example.org\r\nSubject: nul\x00byte\r\n\r\nbo\x00dy\r\n",
        "utf8.eml": b"From: \xff\xfe <a@example.org>\r\nSubject: caf\xe9 \xc3\x28\r\n\r\nbody \xff\r\n",
        "junk.bin": os.urandom(4096),
    }
    for name, data in cases.items():
        (folder / name).write_bytes(data)
    result = run("ingest", "--json", str(folder))
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in json_lines(result.output)}
    assert set(rows) == set(cases)
    assert rows["junk.bin"]["status"] == "rejected"
    for name in cases.keys() - {"junk.bin"}:
        assert rows[name]["status"] in ("new", "unparseable", "follow-up"), rows[name]
        assert rows[name]["inquiry"] is not None
    listed = json.loads(run("list", "--json").output)
    assert len(listed) == len(cases) - 1


def test_console_script_reads_stdin_and_reports_missing_paths(db_url, tmp_path):
    env = dict(os.environ, DATABASE_URL=db_url)
    exe = Path(sys.executable).parent / "intake"
    missing = subprocess.run([str(exe), "ingest", "nope.eml"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "nope.eml" in missing.stderr
    ok = subprocess.run(
        [str(exe), "ingest", "--json", "-"], env=env, capture_output=True,
        input=(EXAMPLES / "03-press-request.eml").read_bytes(),
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.decode().splitlines()[0])["status"] == "new"


@pytest.mark.corpus
def test_every_corpus_message_gets_a_result(run):
    corpus = corpus_dir()
    result = run("ingest", "--json", str(corpus))
    assert result.exit_code == 0, result.output[-2000:]
    rows = json_lines(result.output)
    files = [p for p in corpus.rglob("*") if p.is_file()]
    assert len(rows) >= len(files)
    statuses = {r["status"] for r in rows}
    assert statuses <= {"new", "follow-up", "duplicate", "unparseable", "rejected"}
    # Nothing that is mail is refused: every rejected file is one the tolerant message detector
    # also calls headerless (bare bodies, HTML, JSON payloads, SOURCES.md, msg_19's digest text).
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert rejected and all(r["error"] == "not an email message: no header fields" for r in rejected), rejected
    assert not [r for r in rejected if r["file"].endswith(".eml")]


def test_db_upgrade_command(empty_db_url):
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": empty_db_url})
    assert result.exit_code == 0, result.output
    assert "head" in result.output


def test_server_database_without_schema_asks_for_db_upgrade(empty_db_url):
    if empty_db_url.startswith("sqlite"):
        result = CliRunner().invoke(main, ["list", "--json"], env={"DATABASE_URL": empty_db_url})
        assert result.exit_code == 0 and json.loads(result.output) == []  # SQLite migrates itself
        return
    result = CliRunner().invoke(main, ["list"], env={"DATABASE_URL": empty_db_url})
    assert result.exit_code != 0
    assert "run `intake db upgrade` first" in result.output


def test_unreachable_database_is_a_clear_error(tmp_path):
    url = "postgresql://postgres@127.0.0.1:1/nothing"
    result = CliRunner().invoke(main, ["list"], env={"DATABASE_URL": url})
    assert result.exit_code != 0
    assert "cannot open the database at postgresql+psycopg://postgres@127.0.0.1:1/nothing" in result.output


def test_ingest_goes_on_when_slack_is_down(db_url, tmp_path):
    """Slack unreachable: the messages are still stored, processed and reported, and the
    unposted card is left for the server's sweeper."""
    env = {"DATABASE_URL": db_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s",
           "SLACK_TRIAGE_CHANNEL": "C1", "SLACK_API_URL": "http://127.0.0.1:1/api/"}
    files = [str(EXAMPLES / "02-city-partnership.eml"), str(EXAMPLES / "05-spam.eml")]
    result = CliRunner().invoke(main, ["ingest", "--json", *files], env=env)
    assert result.exit_code == 0, result.output[-2000:]
    assert [r["status"] for r in json_lines(result.output)] == ["new", "new"]
    listed = json.loads(CliRunner().invoke(main, ["list", "--json"], env=env).output)
    assert len(listed) == 2


# --- start-up: a command imports what it uses ---------------------------------------------------

HEAVY = ("sklearn", "numpy", "scipy", "slack_bolt", "slack_sdk", "alembic", "intake.mail", "gunicorn")


def imported_by(args: list[str], env: dict[str, str]) -> set[str]:
    """The heavy modules a fresh interpreter has imported after running `intake ARGS`."""
    code = (
        "import json, sys\n"
        "from intake.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_help_imports_no_layer():
    loaded = imported_by(["--help"], {})
    assert not loaded & {"sklearn", "numpy", "scipy", "slack_bolt", "slack_sdk", "gunicorn", "alembic"}, loaded


def test_list_on_a_current_schema_imports_neither_the_classifier_nor_slack_nor_alembic(db_url):
    loaded = imported_by(["list"], {"DATABASE_URL": db_url})
    assert not loaded & {"sklearn", "numpy", "slack_bolt", "slack_sdk", "alembic"}, loaded


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["list", "--status", "new", "--category", "press"]])
def test_list_on_a_current_schema_does_not_import_sqlalchemy(db_url, args):
    """SQLAlchemy alone costs more start-up than `intake list` may take (docs/benchmarks.md):
    a plain listing reads over the database's own driver."""
    code = (
        "import sys\n"
        "from intake.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'intake')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": db_url, "INTAKE_CONFIG": ""}, cwd=REPO)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.splitlines()[-1]
    assert "intake.dbapi" in loaded  # it ran the plain path...
    assert "sqlalchemy" not in loaded and "alembic" not in loaded, loaded  # ...and nothing else


def test_help_lists_every_lazy_command_with_its_own_short_help():
    from intake.cli import LayeredGroup

    assert set(LayeredGroup.LAZY) <= set(LayeredGroup.SHORT_HELP), "give every lazy command a SHORT_HELP"
    listed = CliRunner().invoke(main, ["--help"]).output
    for name, text in LayeredGroup.SHORT_HELP.items():
        assert re.search(rf"^  {name}\s+{re.escape(text.split()[0])}", listed, re.MULTILINE), name
    # Loaded, a command shows the same line (its own --help still has the full docstring).
    group = click.Context(main)
    for name in LayeredGroup.LAZY:
        assert main.get_command(group, name).get_short_help_str(200) == LayeredGroup.SHORT_HELP[name]


# --- logging -------------------------------------------------------------------------------------


def test_ingest_shows_what_it_would_post_and_send_without_v(run):
    result = run("ingest", str(EXAMPLES / "03-press-request.eml"))
    assert result.exit_code == 0
    assert "Slack is off; would post card" in result.stderr
    assert "SMTP_URL is unset: not sending" in result.stderr
    assert "alembic" not in result.stderr


def test_verbose_adds_no_alembic_noise_on_a_fresh_database(tmp_path):
    result = CliRunner().invoke(main, ["-v", "list"], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"})
    assert result.exit_code == 0, result.output
    assert "alembic" not in result.stderr  # migrated on first use, quietly
    assert result.stdout == "no inquiries\n"


@pytest.mark.parametrize(("level", "shown"), [("WARNING", False), ("info", True), ("DEBUG", True)])
def test_intake_log_level_is_honoured(run, db_url, level, shown):
    result = CliRunner().invoke(main, ["ingest", str(EXAMPLES / "02-city-partnership.eml")],
                                env={"DATABASE_URL": db_url, "SMTP_URL": "", "INTAKE_LOG_LEVEL": level})
    assert result.exit_code == 0
    assert ("would post card" in result.stderr) is shown


def test_a_bad_intake_log_level_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(main, ["list"], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                                                     "INTAKE_LOG_LEVEL": "loud"})
    assert result.exit_code == 1
    assert "INTAKE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got 'loud'" in result.stderr


def test_slack_off_logs_would_post_card_once_per_inquiry(run):
    result = run("ingest", str(EXAMPLES / "02-city-partnership.eml"))
    assert result.stderr.count("would post card") == 1, result.stderr


def test_list_does_not_wait_for_a_writer_on_sqlite(tmp_path):
    """The schema check is a read: `intake list` answers while an ingest holds the write lock
    (it used to begin IMMEDIATE and queue behind it, then fail with "database is locked")."""
    from intake.db import Database
    from intake.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    upgrade(url)
    writer = Database(url)
    conn = writer.engine.connect()
    conn.begin()  # BEGIN IMMEDIATE: the write lock, held like a running ingest
    try:
        result = CliRunner().invoke(main, ["list"], env={"DATABASE_URL": url})
    finally:
        conn.rollback()
        conn.close()
        writer.dispose()
    assert result.exit_code == 0, result.output
    assert result.stdout == "no inquiries\n"
