"""SQL statements per new inquiry, from stored message to card posted and acknowledgment sent.

Not a timing: the count of statements sent to the database (a SQLAlchemy
``before_cursor_execute`` listener; an ``executemany`` counts once, as one statement sent) is
what made the pipeline slow when it grew with every message (issue 11: 44 per new inquiry), and
it does not depend on the machine's load. Real SMTP (aiosmtpd) and the real slack_sdk against
the fake Slack Web API, on both databases.
"""

from __future__ import annotations

import collections
import time

import pytest
from sqlalchemy import event, func, select

from intake import inquiries, outbox, pipeline
from intake.config import Settings
from intake.db import Database
from intake.jobs import InlineQueue
from intake.models import Delivery, Event, Inquiry
from intake.runtime import Runtime
from tests.fakeslack import BOT_TOKEN, TRIAGE_CHANNEL, FakeSlack, kicks_held
from tests.smtp_servers import Recorder, plain_server

FROM = "fellowship@intake.example"
# The target, amortised over a batch of new inquiries (measured for a batch of 20:
# 3.7 on PostgreSQL; 9.6 on SQLite, where the ORM inserts new inquiries, their
# classifications and events one row per statement and each transaction sends its BEGIN).
PER_INQUIRY = 12
# One new inquiry alone, everything included, as measured: the fixed cost of a batch (the reads
# that serve every message of it, the card's data, a claim and a completion per delivery kind,
# the keyed-tag secret created on first use; the outbox poller's look for due rows, which a
# worker mostly saves through its kicks). A regression in the per-batch work shows here first.
ALONE = {"postgresql": 70, "sqlite": 91}
BATCH = 20


def inquiry_email(n: int) -> bytes:
    return (
        f"From: Applicant {n} <applicant{n}@example.org>\r\nTo: {FROM}\r\n"
        f"Subject: How do I apply for the {n} cohort?\r\nMessage-ID: <stmt-{n}-{time.time_ns()}@example.org>\r\n"
        f"Date: Tue, 01 Dec 2026 09:12:00 -0500\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, I would like to apply to the fellowship. When is the deadline? ({n})\r\n"
    ).encode()


class Statements:
    """Counts the statements sent on an engine while ``on``, by their first words."""

    def __init__(self, engine) -> None:
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.on = False
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.by_kind[" ".join(statement.split()[:3])] += 1

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._count)


@pytest.fixture
def desk(db_url, tmp_path):
    """A runtime with Slack (fake, real HTTP) and SMTP (aiosmtpd) switched on."""
    recorder = Recorder()
    with FakeSlack() as slack, plain_server(recorder=recorder) as smtp:
        config = tmp_path / "intake.toml"
        config.write_text("[slack]\npost_interval_seconds = 0\nburst_minutes = 0\n", encoding="utf-8")
        settings = Settings.from_env({
            "DATABASE_URL": db_url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_TRIAGE_CHANNEL": TRIAGE_CHANNEL,
            "SLACK_API_URL": slack.api_url, "SMTP_URL": smtp.url(starttls="never"),
            "INTAKE_FROM_ADDRESS": FROM, "INTAKE_CONFIG": str(config),
        })
        database = Database(db_url)
        rt = Runtime(settings, database, queue=InlineQueue())
        try:
            yield rt, slack, recorder
        finally:
            database.dispose()


def _drain(rt: Runtime, first: int, count: int) -> Statements:
    """Store ``count`` new inquiries as the webhook does, then count the statements of
    processing them and of every delivery they owe (a worker: batches, then the outbox)."""
    with kicks_held(rt):
        for n in range(first, first + count):
            with rt.db.session() as session:
                inquiries.store_raw(session, inquiry_email(n), provider="mime")
        statements = Statements(rt.db.engine)
        statements.on = True
        try:
            done = pipeline.process_waiting(rt)
            for _ in range(10):  # card, acknowledgment, email, card update: a few rounds
                if not outbox.run_due(rt, fresh_too=True):
                    break
        finally:
            statements.on = False
            statements.close()
    assert [r.status for r in done] == ["new"] * count
    return statements


def _all_delivered(rt: Runtime, inquiries_expected: int) -> None:
    with rt.db.read_session() as session:
        states = dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
        sent = session.scalar(select(func.count()).select_from(Event).where(Event.kind == "ack_sent"))
        carded = session.scalar(select(func.count()).select_from(Inquiry).where(Inquiry.slack_ts.is_not(None)))
    assert set(states) == {"done"}, states
    assert sent == inquiries_expected and carded == inquiries_expected


def test_statements_per_new_inquiry_in_a_batch(desk):
    rt, slack, recorder = desk
    statements = _drain(rt, 1, BATCH)
    _all_delivered(rt, BATCH)
    assert len(slack.calls_to("chat.postMessage")) == BATCH  # one card each, then updated
    assert len(recorder.received) == BATCH  # one acknowledgment each
    per_inquiry = statements.total / BATCH
    assert per_inquiry <= PER_INQUIRY, (per_inquiry, statements.by_kind.most_common())


def test_statements_for_one_new_inquiry_alone(desk):
    rt, slack, recorder = desk
    statements = _drain(rt, 100, 1)
    _all_delivered(rt, 1)
    assert len(slack.calls_to("chat.postMessage")) == 1 and len(recorder.received) == 1
    bound = ALONE[rt.db.engine.dialect.name]
    assert statements.total <= bound, (statements.total, statements.by_kind.most_common())
