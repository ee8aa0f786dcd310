"""Every query the hot path runs is served by an index, on PostgreSQL and on SQLite (issue 11).

A query that scans ``messages``, ``inquiries``, ``events`` or ``deliveries`` costs a little at a
few hundred rows and grows with every email the desk ever received: the acknowledgment's rate
caps once filtered on ``lower(to_address)`` and read the whole of ``messages`` five times per new
inquiry. This test finds such queries by running the real hot paths, not a list of statements
written by hand, so a query added later is checked too.

1. One desk's working day runs on a database of each kind, with real parts: the signed
   ``/inbound/mime`` webhook (on PostgreSQL its one-statement direct store), processing of new
   messages and of follow-ups (threading by In-Reply-To, by ticket token, by subject), the
   classifier's write, the acknowledgment decision and its rate caps, the outbox (claim, the
   lease check, completion) delivering cards to the fake Slack and emails to a real SMTP server,
   staff actions through signed ``/slack/events`` requests (claim, assign, reclassify, note,
   reply, waiting, close, reopen, spam), ``/inquiries`` and the App Home, the periodic jobs a
   worker runs every minute (the pipeline sweep, the outbox poller, the SLA tick, the groups
   refresh, the digest), and ``intake list`` / ``show`` / ``due``.
2. Every statement the database receives meanwhile is recorded with its parameters (SQLAlchemy's
   ``before_cursor_execute`` on every engine, and the webhook's raw psycopg cursor).
3. Each distinct statement that names one of those tables is explained with the parameters it ran
   with: on PostgreSQL ``EXPLAIN (FORMAT JSON)`` inside a transaction with ``SET LOCAL
   enable_seqscan = off``, so that a small table still shows whether an index *can* serve the
   query (the planner then scans only when nothing else is possible; a whole-index walk with a
   filter, its other way to read a table, is checked again with index scans off too); on SQLite
   ``EXPLAIN QUERY PLAN``, where ``SCAN <table>`` without an index is the full scan (``SEARCH``
   and ``SCAN ... USING INDEX`` are fine).

A failure names the statement, the phase of the day that ran it and the plan line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import dataclasses
import json
import re
import time
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine

from intake.app import create_app
from intake.config import Settings
from intake.db import Database, DirectConnection
from intake.inbound import mime
from intake.jobs import InlineQueue
from intake.models import Inquiry, Message, utcnow
from intake.runtime import Runtime
from intake.slack import blocks as B
from intake.slack.app import build_bolt_app, register_flask
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    button_payload,
    command_body,
    fake_slack,
    interactive_body,
    load_fixture,
    radio_value,
    select_payload,
    signed,
    slack_env,
    text_value,
    view_submission,
    write_config,
)
from tests.smtp_servers import plain_server

HOT_TABLES = ("messages", "inquiries", "events", "deliveries")
SECRET = "plans-secret"
FORM = "application/x-www-form-urlencoded"
OUR_ADDRESS = "desk@fellowship.example.org"
_NAMES_A_HOT_TABLE = re.compile(r"\b(" + "|".join(HOT_TABLES) + r")\b", re.IGNORECASE)
_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)

# Statements the day runs that read a whole table on purpose (a pattern of their SQL, and why).
# Retention sweeps, exports, erasure and the weekly report read whole tables by design too; they
# are not on the hot path and the day below does not run them.
EXCLUDED: dict[str, str] = {
    # intake.search / inquiries.search_inquiries: `/inquiries search`, the App Home search box,
    # `intake list --query`. A word may sit anywhere in a subject or body (LIKE '%word%'), which
    # no B-tree index can serve on either database; it runs when a person searches, not once per
    # message. A trigram (pg_trgm) or FTS5 index would be a change of its own.
    r"LIKE '%{1,2}' \|\|": "substring search of subjects and bodies",
}


# ---- capturing what the database receives ------------------------------------------------------


@dataclasses.dataclass
class Statement:
    sql: str
    params: Any
    phase: str
    dialect: str


class StatementLog:
    """Every statement any engine sends while recording, with its parameters and the phase of
    the day that sent it. The first parameters a statement ran with are the ones explained."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.recording = False
        self.statements: dict[tuple[str, str], Statement] = {}
        self.hot_by_phase: dict[str, int] = {}  # statements naming a hot table, repeats included

    def add(self, dialect: str, sql: str, params: Any, executemany: bool = False) -> None:
        if not self.recording:
            return
        if _DML.match(sql) and _NAMES_A_HOT_TABLE.search(sql):
            self.hot_by_phase[self.phase] = self.hot_by_phase.get(self.phase, 0) + 1
        # executemany: the first row's parameters; but a multi-row INSERT .. RETURNING that
        # SQLAlchemy renders itself ("insertmanyvalues") comes flagged so with all its rows'
        # values in one flat sequence, which is what its statement takes.
        if executemany and isinstance(params, (list, tuple)) and params and isinstance(params[0], (list, tuple, dict)):
            params = params[0]
        key = (dialect, sql)
        if key not in self.statements:
            self.statements[key] = Statement(sql, params, self.phase, dialect)

    def _before_cursor_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.add(conn.dialect.name, statement, parameters, executemany)

    @contextlib.contextmanager
    def phase_of_day(self, name: str) -> Iterator[None]:
        self.phase, self.recording = name, True
        self.hot_by_phase.setdefault(name, 0)
        try:
            yield
        finally:
            self.recording = False

    def hot(self, dialect: str) -> list[Statement]:
        """Distinct statements on ``dialect`` that read or write one of the hot tables."""
        return [s for (d, sql), s in self.statements.items()
                if d == dialect and _DML.match(sql) and _NAMES_A_HOT_TABLE.search(sql)]


class _RecordingCursor:
    """The webhook's direct psycopg cursor (Database.direct), recording what it executes: that
    path bypasses SQLAlchemy's events."""

    def __init__(self, cursor: Any, log: StatementLog) -> None:
        self._cursor, self._log = cursor, log

    def execute(self, sql: str, params: Any = None, **kw: Any) -> Any:
        self._log.add("postgresql", sql, params)
        return self._cursor.execute(sql, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def statement_log(monkeypatch) -> Iterator[StatementLog]:
    log = StatementLog()
    event.listen(Engine, "before_cursor_execute", log._before_cursor_execute)
    original_run = DirectConnection.run
    monkeypatch.setattr(DirectConnection, "run",
                        lambda self, work: original_run(self, lambda cursor: work(_RecordingCursor(cursor, log))))
    try:
        yield log
    finally:
        event.remove(Engine, "before_cursor_execute", log._before_cursor_execute)


# ---- reading the plans -------------------------------------------------------------------------


def _pg_scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _pg_scans(child)


@contextlib.contextmanager
def driver_connection(url: str) -> Iterator[Any]:
    """The driver's own connection (psycopg or sqlite3) to ``url``, outside any recording."""
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        yield raw.driver_connection
    finally:
        raw.close()
        engine.dispose()


def _pg_plan(conn: Any, statement: Statement, *disabled: str) -> list[dict[str, Any]]:
    """The plan's nodes with these planner methods disabled (inside a transaction rolled back)."""
    with conn.transaction(force_rollback=True):
        for method in disabled:
            conn.execute(f"SET LOCAL {method} = off")
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + statement.sql, statement.params).fetchone()[0]
    return list(_pg_scans(plan[0]["Plan"]))


def _pg_seq_scanned(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in HOT_TABLES}


def _pg_index_walks(nodes: list[dict[str, Any]]) -> set[str]:
    """Hot tables read through a whole index with a filter on its rows: with sequential scans
    off, the planner's way to read a whole small table (typically the primary key, in id order)."""
    return {n["Relation Name"] for n in nodes
            if n["Node Type"] in ("Index Scan", "Index Only Scan") and n.get("Relation Name") in HOT_TABLES
            and "Index Cond" not in n and "Filter" in n}


def postgres_full_scans(url: str, statements: list[Statement]) -> list[str]:
    """Each statement's plan with sequential scans forbidden unless unavoidable: the scans of a
    hot table that remain, one line per statement.

    A whole-index walk with a filter can stand in for the forbidden scan, or be a fair choice on
    a small table when it saves a sort. Such a plan is asked again with index scans forbidden
    too, which leaves bitmap scans, that is lookups by an index condition, as the one way in at
    a normal cost: a hot table still read whole (a Seq Scan or an index walk) has no index that
    serves the statement."""
    problems = []
    with driver_connection(url) as conn:
        for statement in statements:
            nodes = _pg_plan(conn, statement, "enable_seqscan")
            scanned, how = _pg_seq_scanned(nodes), "Seq Scan"
            if not scanned and _pg_index_walks(nodes):
                again = _pg_plan(conn, statement, "enable_seqscan", "enable_indexscan", "enable_indexonlyscan")
                scanned, how = _pg_seq_scanned(again) | _pg_index_walks(again), "whole-table read (index walk + filter)"
            if scanned:
                problems.append(f"[{statement.phase}] {how} on {', '.join(sorted(scanned))}: {_short(statement.sql)}")
    return problems


# `SCAN t` reads the whole table; `SCAN t USING [COVERING] INDEX i` walks an index in order (for
# an ORDER BY ... LIMIT) and `SEARCH t USING ...` looks rows up.
_SQLITE_FULL_SCAN = re.compile(r"^SCAN (\w+)(?: AS \w+)?(?!.*\bUSING\b.*\bINDEX\b)", re.IGNORECASE)


def sqlite_full_scans(url: str, statements: list[Statement]) -> list[str]:
    problems = []
    with driver_connection(url) as conn:
        for statement in statements:
            rows = conn.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.params or ()).fetchall()
            scanned = sorted({m.group(1) for *_, detail in rows
                              if (m := _SQLITE_FULL_SCAN.match(detail)) and m.group(1) in HOT_TABLES})
            if scanned:
                problems.append(f"[{statement.phase}] SCAN {', '.join(scanned)}: {_short(statement.sql)}")
    return problems


def _short(sql: str, limit: int = 1200) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


# ---- the day ----------------------------------------------------------------------------------


def email(n: int, sender: str, subject: str, body: str, **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"From: Person {n} <{sender}>\r\nTo: {OUR_ADDRESS}\r\nSubject: {subject}\r\n"
        f"Date: Tue, 01 Dec 2026 09:{n % 60:02d}:00 -0500\r\nMessage-ID: <plans-{n}-{time.time_ns()}@example.org>\r\n"
        f"MIME-Version: 1.0\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


QUESTIONS = [
    ("How do I apply?", "Hello, when is the application deadline for the fellowship? Thanks"),
    ("Hosting a fellow", "Our city would like to host a fellow next year. What does it cost us?"),
    ("Interview request", "I am a reporter on deadline; could I speak with your director today?"),
    ("Status of my application", "I applied in October and have not heard back. Is my application complete?"),
    ("Volunteering", "I would like to volunteer as a mentor for the design track."),
]


def post_mime(client, raw: bytes):
    response = client.post("/inbound/mime", data=raw, content_type="message/rfc822",
                           headers={"X-Intake-Signature": mime.sign(raw, SECRET)})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def run_day(log: StatementLog, fake_slack, db_url: str, tmp_path) -> dict[str, Any]:
    config = write_config(tmp_path / "intake.toml", {"burst_minutes": 0})
    seen: dict[str, Any] = {}
    with plain_server() as smtp:
        env = slack_env(fake_slack, db_url, config, INBOUND_HMAC_SECRET=SECRET, SMTP_URL=smtp.url(),
                        INTAKE_QUEUE_PATH=str(tmp_path / "queue.db"))
        settings = Settings.from_env(env)
        database = Database.from_settings(settings)
        rt = Runtime(settings, database, queue=InlineQueue())
        web = create_app(rt=rt).test_client()
        slack_app = Flask("plans")
        register_flask(slack_app, rt, bolt_app=build_bolt_app(rt, process_before_response=True))
        slack = slack_app.test_client()

        def interactive(payload):
            response = slack.post("/slack/events", **signed(interactive_body(payload), FORM))
            assert response.status_code == 200, response.get_data(as_text=True)
            return response

        def command(text: str, user: str = "U100"):
            body = {**load_fixture("slash_command.json"), "text": text, "user_id": user}
            response = slack.post("/slack/events", **signed(command_body(body), FORM))
            assert response.status_code == 200
            return response

        try:
            with log.phase_of_day("webhook: the desk's earlier mail"):
                for n in range(30):
                    subject, body = QUESTIONS[n % len(QUESTIONS)]
                    post_mime(web, email(n, f"earlier{n}@example.org", f"{subject} ({n})", body))

            with log.phase_of_day("webhook: new inquiry, processed, carded, acknowledged"):
                first_raw = email(100, "nia.campbell@example.org", "Can I apply if I graduate in June?",
                                  "I finish my master's in June. Am I eligible, and when is the deadline?")
                answer = post_mime(web, first_raw)
                assert answer["status"] == "stored"
            with log.phase_of_day("webhook: a provider's retry (duplicate)"):
                assert post_mime(web, first_raw)["status"] == "duplicate"
            with database.session() as session:
                nia = session.scalars(select(Inquiry).where(Inquiry.subject == "Can I apply if I graduate in June?")).one()
                ack = session.scalars(select(Message).where(Message.kind == "acknowledgment",
                                                            Message.inquiry_id == nia.id)).one()
                seen["nia"], nia_version = nia.id, nia.version
                ack_subject, ack_message_id = ack.subject, ack.message_id
                assert nia.slack_ts, "the card was posted"

            with log.phase_of_day("webhook: a second message from the same person (caps, contact)"):
                post_mime(web, email(101, "nia.campbell@example.org", "Another question",
                                     "Also: is the fellowship remote?"))
            with log.phase_of_day("webhook: follow-up threaded by In-Reply-To"):
                post_mime(web, email(102, "Nia.Campbell@example.org", f"Re: {ack_subject}", "Thanks! One more thing.",
                                     In_Reply_To=f"<{ack_message_id}>", References=f"<{ack_message_id}>"))
            with log.phase_of_day("webhook: follow-up threaded by its ticket token"):
                post_mime(web, email(103, "nia.campbell@example.org", ack_subject, "Following up on my question."))
            with log.phase_of_day("webhook: follow-up threaded by subject"):
                post_mime(web, email(104, "earlier0@example.org", "Re: How do I apply? (0)", "Any news?"))
            with log.phase_of_day("webhook: an auto-reply (automated, no acknowledgment)"):
                post_mime(web, email(105, "mailer@example.org", "Out of office", "I am away until Monday.",
                                     Auto_Submitted="auto-replied"))

            with log.phase_of_day("ingest: store_raw through a session"):
                runner = CliRunner()
                folder = tmp_path / "mailbox"
                folder.mkdir()
                for n in range(3):  # several files: processed as one batch
                    (folder / f"{n}.eml").write_bytes(email(106 + n, f"walkin{n}@example.org", "Stipend question",
                                                            f"How much is the stipend? ({n})"))
                result = runner.invoke(_main(), ["ingest", "--json", str(folder)], env=env, catch_exceptions=False)
                assert result.exit_code == 0, result.output

            inquiry = seen["nia"]
            with log.phase_of_day("slack: claim"):
                interactive(button_payload(B.A_CLAIM, f"{inquiry}:{nia_version}"))
            with log.phase_of_day("slack: assign"):
                interactive(select_payload(B.A_ASSIGN, inquiry, {"selected_user": "U200"}))
            with log.phase_of_day("slack: reclassify"):
                interactive(select_payload(B.A_RECLASSIFY, inquiry, {"selected_option": {"value": "application"}}))
            with log.phase_of_day("slack: note"):
                interactive(view_submission(B.V_NOTE, {"body": text_value("Called her back")}, {"inquiry_id": inquiry}))
            with log.phase_of_day("slack: reply modal opened"):
                interactive(button_payload(B.A_REPLY, str(inquiry)))
            with log.phase_of_day("slack: reply sent"):
                interactive(view_submission(B.V_REPLY, {
                    "body_0": text_value("Hi Nia, yes: June is fine. The deadline is 15 January."),
                    "mode": radio_value(B.REPLY_SEND)}, {"inquiry_id": inquiry, "revision": 0}))
            with log.phase_of_day("slack: waiting on applicant"):
                interactive(button_payload(B.A_WAITING, str(inquiry)))
            with log.phase_of_day("slack: close"):
                interactive(button_payload(B.A_CLOSE, str(inquiry)))
            with log.phase_of_day("slack: reopen"):
                interactive(button_payload(B.A_REOPEN, str(inquiry)))
            with database.session() as session:
                other = session.scalars(select(Inquiry.id).where(Inquiry.subject.like("Volunteering%"))).first()
            with log.phase_of_day("slack: spam and not spam"):
                interactive(button_payload(B.A_SPAM, str(other)))
                interactive(button_payload(B.A_NOT_SPAM, str(other)))
            with log.phase_of_day("slack: an inquiry logged from a phone call"):
                interactive(view_submission(B.V_NEW, {
                    "sender_address": text_value("bo@example.org"), "sender_name": text_value("Bo"),
                    "subject": text_value("Stipend"), "body": text_value("Called about the stipend")}, {}))
            with log.phase_of_day("slack: /inquiries"):
                for text in ("open", "mine", "unassigned", "search deadline", f"show {inquiry}", "stats"):
                    command(text)
            with log.phase_of_day("slack: App Home"):
                home = {"type": "event_callback", "event_id": "EvPLANS1", "team_id": "T111", "api_app_id": "A111",
                        "event": {"type": "app_home_opened", "user": "U100", "channel": "D1", "tab": "home",
                                  "event_ts": "1700000000.1"}}
                slack.post("/slack/events", **signed(json.dumps(home), "application/json"))

            with log.phase_of_day("worker: periodic jobs"):
                from intake import outbox, pipeline
                from intake.grouping import store as groups
                from intake.sla.jobs import tick
                from intake.slack.deliveries import digest

                pipeline.sweep(rt)
                outbox.run_due(rt)
                tick(rt)
                tick(rt, utcnow() + dt.timedelta(days=3))  # reminders and escalations due
                groups.refresh(rt)
                digest(rt)
                outbox.run_due(rt, fresh_too=True)

            with log.phase_of_day("cli: list, show, due"):
                for args in (["list"], ["list", "--status", "open"], ["list", "--query", "deadline"],
                             ["show", str(inquiry)], ["due", "--json"]):
                    result = runner.invoke(_main(), args, env=env, catch_exceptions=False)
                    assert result.exit_code == 0, (args, result.output)

            seen["smtp"] = len(smtp.received)
        finally:
            database.dispose()
    return seen


def _main():
    from intake.cli import main

    return main


def test_every_hot_path_query_is_served_by_an_index(statement_log, fake_slack, db_url, tmp_path):
    seen = run_day(statement_log, fake_slack, db_url, tmp_path)
    assert seen["smtp"] >= 3, "acknowledgments and the reply went out"
    idle = [phase for phase, count in statement_log.hot_by_phase.items() if not count]
    assert not idle, f"phases that never reached the hot tables (the day went wrong): {idle}"
    dialect = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    statements = [s for s in statement_log.hot(dialect)
                  if not any(re.search(pattern, s.sql) for pattern in EXCLUDED)]
    assert len(statements) > 50, f"too few statements recorded to mean anything: {len(statements)}"
    check = postgres_full_scans if dialect == "postgresql" else sqlite_full_scans
    problems = check(db_url, statements)
    assert not problems, (f"{len(problems)} of {len(statements)} hot-path statements read a whole table:\n"
                          + "\n".join(problems))
