"""The outbox delivering several rows at once: the same outcomes as one by one, fewer round trips.

Real SMTP (aiosmtpd) and the real slack_sdk against the fake Slack Web API, on both databases.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from sqlalchemy import event, select

from intake import outbox
from intake.jobs import InlineQueue
from intake.models import Delivery, Event, Inquiry, Message, utcnow
from intake.outbound.acknowledge import acknowledge_many
from intake.outbound.sending import send_many
from intake.outbound.smtp import Connection, DeliveryError, smtp_settings
from intake.runtime import Runtime
from tests.fakeslack import BOT_TOKEN, TRIAGE_CHANNEL, FakeSlack, kicks_held
from tests.smtp_servers import Recorder, free_port, plain_server, seed_inquiry

FROM = "fellowship@intake.example"


def person_email(n: int, sender: str | None = None) -> bytes:
    return (
        f"From: Person {n} <{sender or f'person{n}@example.org'}>\r\nTo: {FROM}\r\n"
        f"Subject: Question {n} about applying\r\nMessage-ID: <batch-{n}-{time.time_ns()}@example.org>\r\n"
        f"Date: Tue, 01 Dec 2026 09:12:00 -0500\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, when is the deadline? ({n})\r\n"
    ).encode()


def runtime(settings, db, smtp_url: str | None, **env) -> Runtime:
    return Runtime(dataclasses.replace(settings, smtp_url=smtp_url, from_address=FROM, **env), db,
                   queue=InlineQueue())


class CountingRecorder(Recorder):
    """Counts SMTP sessions (EHLO) beside the messages."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        self.sessions += 1
        session.host_name = hostname
        return responses


def test_acknowledgments_decided_together_match_one_at_a_time(settings, db):
    """Two new inquiries from one address in one batch: the first is acknowledged, the second
    sees it queued and is held by the one-per-sender limit, as it would be one at a time."""
    rt = runtime(settings, db, None)
    first, m1 = seed_inquiry(rt, person_email(1, "same@example.org"))
    second, m2 = seed_inquiry(rt, person_email(2, "same@example.org"))
    other, m3 = seed_inquiry(rt, person_email(3))
    with kicks_held(rt):
        results = acknowledge_many(rt, [m1, m2, m3])
    assert [results[m].status for m in (m1, m2, m3)] == ["queued", "capped", "queued"]
    assert "already acknowledged same@example.org" in results[m2].reason
    with rt.db.session() as session:
        kinds = [e.kind for e in session.scalars(select(Event).order_by(Event.id))]
        assert kinds == ["ack_queued", "ack_suppressed", "ack_queued"]
        rows = session.scalars(select(Message).where(Message.kind == "acknowledgment")).all()
        assert sorted(r.to_address for r in rows) == ["person3@example.org", "same@example.org"]
    # Asked again (a retried delivery), nothing new is queued.
    with kicks_held(rt):
        again = acknowledge_many(rt, [m1, m3])
    assert {r.status for r in again.values()} == {"exists"}


def test_a_batch_of_emails_goes_over_one_smtp_connection(settings, db):
    recorder = CountingRecorder()
    with plain_server(recorder=recorder) as server:
        rt = runtime(settings, db, server.url())
        ids = []
        for n in range(4):
            _, message_id = seed_inquiry(rt, person_email(10 + n))
            with kicks_held(rt):
                ids.append(acknowledge_many(rt, [message_id])[message_id].outbound_id)
        outcomes = send_many(rt, ids)
        assert outcomes == {i: "sent" for i in ids}
        assert len(server.received) == 4
        assert recorder.sessions == 1
        with rt.db.session() as session:
            assert {m.state for m in session.scalars(select(Message).where(Message.id.in_(ids)))} == {"sent"}
            assert len(session.scalars(select(Event).where(Event.kind == "ack_sent")).all()) == 4


def test_an_unreachable_relay_fails_the_rest_of_its_batch_at_once():
    cfg = smtp_settings(f"smtp://127.0.0.1:{free_port()}?timeout=3&starttls=never")
    connection = Connection(cfg)
    try:
        connection.send("a@x.org", "b@x.org", b"Subject: x\r\n\r\nx\r\n")
    except DeliveryError as exc:
        assert not exc.permanent
    started = time.monotonic()
    for _ in range(20):
        try:
            connection.send("a@x.org", "b@x.org", b"Subject: x\r\n\r\nx\r\n")
        except DeliveryError as exc:
            assert not exc.permanent and "cannot connect" in str(exc)
    assert time.monotonic() - started < 0.5  # no new connection attempt for each


def test_a_lane_job_claims_and_completes_its_deliveries_in_a_few_statements(settings, db):
    """Ten acknowledgments owed: one claim and one completion for the ten, then for the ten emails
    they owe (which join the same job), then for the ten card updates the sent emails owe (run by
    the inline queue after the job): three batches, whatever the count."""
    rt = runtime(settings, db, None)
    ids = []
    with kicks_held(rt):
        for n in range(10):
            seed_inquiry(rt, person_email(20 + n))
        with rt.db.session() as session:
            for message in session.scalars(select(Message).where(Message.direction == "inbound")):
                outbox.owe(session, "email.acknowledge", key=f"ack:{message.id}", inquiry_id=message.inquiry_id,
                           args={"message_id": message.id})
            ids = list(session.scalars(select(Delivery.id).where(Delivery.kind == "email.acknowledge")))
    statements = []
    event.listen(rt.db.engine, "before_cursor_execute", lambda conn, cur, stmt, *a: statements.append(stmt))
    results = outbox.worker.deliver_job(rt, ids)
    assert results.count("queued") == 10 and results.count("sent") == 10
    claims = [s for s in statements if s.lstrip().startswith("UPDATE deliveries SET attempts")]
    completions = [s for s in statements if s.lstrip().startswith("UPDATE deliveries SET state")]
    assert (len(claims), len(completions)) == (3, 3)
    with rt.db.session() as session:
        assert {d.state for d in session.scalars(select(Delivery))} == {"done"}


def test_lease_margin_is_a_quarter_of_a_short_lease(settings, db):
    from intake.outbox.core import Ticket
    from intake.outbox.worker import lease_left

    short = dataclasses.replace(settings, toml={**settings.toml, "outbox": {**settings.toml["outbox"],
                                                                            "lease_seconds": 8}})
    rt = Runtime(short, db, queue=InlineQueue())
    now = utcnow()
    ticket = Ticket(1, "k", "email.send", None, {}, 1, 1, now, now + dt.timedelta(seconds=8))
    assert lease_left(rt, ticket, now=now + dt.timedelta(seconds=5.9))
    assert not lease_left(rt, ticket, now=now + dt.timedelta(seconds=6.1))


def slack_runtime(slack: FakeSlack, db_url: str, tmp_path) -> Runtime:
    """A runtime posting to the fake Slack at once (no pacing, no folding of bursts)."""
    from intake.config import Settings
    from intake.db import Database

    config = tmp_path / "c.toml"
    config.write_text("[slack]\npost_interval_seconds = 0\nburst_minutes = 0\n", encoding="utf-8")
    settings = Settings.from_env({"DATABASE_URL": db_url, "SLACK_BOT_TOKEN": BOT_TOKEN,
                                  "SLACK_TRIAGE_CHANNEL": TRIAGE_CHANNEL, "SLACK_API_URL": slack.api_url,
                                  "INTAKE_CONFIG": str(config)})
    return Runtime(settings, Database(db_url), queue=InlineQueue())


def test_cards_for_a_batch_are_posted_once_each_and_recorded(db_url, tmp_path):
    """Five inquiries' cards delivered in one job: five posts, each recorded on its inquiry;
    a second run finds them posted and only updates."""
    with FakeSlack() as slack:
        rt = slack_runtime(slack, db_url, tmp_path)
        database = rt.db
        with kicks_held(rt):
            inquiry_ids = [seed_inquiry(rt, person_email(40 + n))[0] for n in range(5)]
            with rt.db.session() as session:
                for inquiry_id in inquiry_ids:
                    outbox.owe_card(session, inquiry_id)
                ids = list(session.scalars(select(Delivery.id).where(Delivery.kind == "slack.card")))
        assert set(outbox.deliver_many(rt, ids).values()) == {"posted"}
        assert len(slack.calls_to("chat.postMessage")) == 5
        with rt.db.session() as session:
            recorded = {i.id: i.slack_ts for i in session.scalars(select(Inquiry))}
        assert sorted(recorded.values()) == sorted(m["ts"] for m in slack.top_level(TRIAGE_CHANNEL))
        with kicks_held(rt):
            with rt.db.session() as session:
                for inquiry_id in inquiry_ids:
                    outbox.owe_card(session, inquiry_id)
        assert set(outbox.deliver_many(rt, ids).values()) == {"updated"}
        assert len(slack.calls_to("chat.postMessage")) == 5 and len(slack.calls_to("chat.update")) == 5
        database.dispose()


def test_follow_up_lines_for_a_batch_are_planned_together_and_posted_once_each(db_url, tmp_path):
    """Three follow-ups owe three thread lines; delivered in one job (one read of the messages for
    all of them), each is posted once in its card's thread and recorded on its message, and a
    line whose message already has one is skipped."""
    from intake import inquiries
    from intake.pipeline import process_ids

    with FakeSlack() as slack:
        rt = slack_runtime(slack, db_url, tmp_path)
        database = rt.db
        opening = person_email(70, "asker@example.org")
        first_id = opening.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        with rt.db.session() as session:
            stored = inquiries.store_raw(session, opening, provider="test")
        [opened] = process_ids(rt, [stored.message_id])  # the card is posted inline
        [card] = slack.top_level(TRIAGE_CHANNEL)
        with kicks_held(rt):
            ids = []
            for n in range(3):
                reply = (f"From: Person 70 <asker@example.org>\r\nTo: {FROM}\r\nSubject: Re: Question 70 about "
                         f"applying\r\nMessage-ID: <line-{n}-{time.time_ns()}@example.org>\r\nIn-Reply-To: {first_id}"
                         f"\r\nDate: Tue, 01 Dec 2026 10:0{n}:00 -0500\r\n\r\nOne more thing, number {n}.\r\n").encode()
                with rt.db.session() as session:
                    ids.append(inquiries.store_raw(session, reply, provider="test").message_id)
            done = process_ids(rt, ids)
            assert [(d.status, d.inquiry_id) for d in done] == [("follow-up", opened.inquiry_id)] * 3
            with rt.db.session() as session:
                lines = list(session.scalars(select(Delivery.id).where(Delivery.kind == "slack.message_line")
                                             .order_by(Delivery.id)))
        assert len(lines) == 3
        with rt.db.session() as session:  # the second line's message has one already (an earlier run)
            session.get(Message, ids[1]).slack_ts = "1.000001"
        statements = []
        event.listen(rt.db.engine, "before_cursor_execute",
                     lambda conn, cur, stmt, *a: statements.append(stmt))
        results = outbox.deliver_many(rt, lines)
        assert [results[i] for i in lines] == ["posted", "skipped", "posted"]
        assert len([s for s in statements if "FROM messages" in s]) == 1  # read once for the batch
        posted = slack.thread(TRIAGE_CHANNEL, card["ts"])
        assert len(posted) == 2 and ["number 0" in str(posted[0]), "number 2" in str(posted[1])] == [True, True]
        with rt.db.session() as session:
            recorded = {m.id: m.slack_ts for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
        assert recorded[ids[0]] == posted[0]["ts"] and recorded[ids[2]] == posted[1]["ts"]
        assert set(outbox.deliver_many(rt, lines).values()) == {"not due"}  # done: nothing posted twice
        assert len(slack.thread(TRIAGE_CHANNEL, card["ts"])) == len(posted)
        database.dispose()
