"""Staff replies over real SMTP servers: headers, threading, TLS + AUTH, outages, exactly once."""

from __future__ import annotations

import dataclasses
import re
import datetime as dt

import pytest
from sqlalchemy import select

from intake import outbox
from intake.models import Delivery, Event, Inquiry, Message, utcnow
from intake.outbound import queue_reply, send_message, send_reply
from intake.outbound.replies import ReplyError
from intake.outbox import Retry
from intake.jobs import InlineQueue
from intake.runtime import Runtime
from tests.smtp_servers import DroppingServer, Recorder, fixture_bytes, free_port, plain_server, secure_server, seed_inquiry

FROM = "fellowship@intake.example"


def runtime(settings, db, smtp_url: str | None, **toml) -> Runtime:
    merged = {**settings.toml, **toml}
    return Runtime(dataclasses.replace(settings, smtp_url=smtp_url, from_address=FROM, toml=merged), db, queue=InlineQueue())


def events(rt: Runtime, kind: str) -> list[Event]:
    with rt.db.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def row(rt: Runtime, message_id: int) -> Message:
    with rt.db.session() as session:
        return session.get(Message, message_id)


def delivery(rt: Runtime, message_id: int) -> Delivery:
    with rt.db.session() as session:
        return session.scalars(select(Delivery).where(Delivery.key == f"send:{message_id}")).one()


def retry_now(rt: Runtime, message_id: int, *, failing_since: dt.timedelta | None = None) -> str:
    """Run the reply's delivery as the poller would once its backoff is over (time travel:
    the backoff, and optionally how long it has been failing, are moved into the past)."""
    with rt.db.session() as session:
        found = session.scalars(select(Delivery).where(Delivery.key == f"send:{message_id}")).one()
        found.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
        if failing_since is not None and found.first_failed_at is not None:
            found.first_failed_at = utcnow() - failing_since
            found.deadline = found.first_failed_at + rt.settings.outbox.email_deadline
        delivery_id = found.id
    return outbox.deliver(rt, delivery_id)


def queue_only(rt: Runtime, inquiry_id: int, text: str) -> int:
    """A reply queued and owed, its first delivery attempt not yet made (the kick is held)."""
    hook, rt.db.on_owed = rt.db.on_owed, None
    try:
        return send_reply(rt, inquiry_id, text, "U1")
    finally:
        rt.db.on_owed = hook


def test_reply_is_received_once_with_threading_headers(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, inbound_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
        out_id = send_reply(rt, inquiry_id, "Hello María,\n\nThe deadline is 1 December.", "U_STAFF")
        # Delivered by the outbox at once; the delivery is done and sending again changes nothing.
        assert delivery(rt, out_id).state == "done"
        assert send_message(rt, out_id) == "sent"

        assert len(server.received) == 1
        got = server.received[0]
        stored = row(rt, out_id)
        msg = got.message
        assert got.rcpt_tos == ["maria.lopez@example.org"]  # the conversation's address, not the Reply-To
        assert got.mail_from == FROM
        assert re.fullmatch(rf"Re: Question about the application deadline \[#{inquiry_id}-[a-z2-7]{{6}}\]", msg["Subject"])
        assert msg["Message-ID"] == f"<{stored.message_id}>"
        assert msg["In-Reply-To"] == "<CAF1234human@mail.example.org>"
        assert msg["References"] == "<older-1@mail.example.org> <CAF1234human@mail.example.org>"
        assert msg.get_content().startswith("Hello María,")
        assert "Auto-Submitted" not in msg  # a person wrote this one
        # What went over the wire is what was stored at queue time.
        assert got.data.rstrip(b"\r\n") == stored.raw.rstrip(b"\r\n")

    assert stored.state == "sent" and stored.sent_at is not None and stored.attempts == 1
    assert stored.direction == "outbound" and stored.kind == "reply" and stored.author == "U_STAFF"
    assert stored.dedupe_key == f"out:{stored.message_id}"
    assert stored.message_id.endswith("@intake.example")
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, inquiry_id)
        assert inquiry.status == "waiting"
        assert inquiry.first_response_at is not None
    sent = events(rt, "reply_sent")
    assert [(e.actor, e.inquiry_id, e.detail["message_id"]) for e in sent] == [("U_STAFF", inquiry_id, out_id)]


def test_first_response_time_is_kept_on_a_second_reply(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        send_reply(rt, inquiry_id, "First answer.", "U1")
        with rt.db.session() as session:
            first = session.get(Inquiry, inquiry_id).first_response_at
        send_reply(rt, inquiry_id, "Second answer.", "U2")
        with rt.db.session() as session:
            assert session.get(Inquiry, inquiry_id).first_response_at == first
        assert len(server.received) == 2
        ids = {r.message["Message-ID"] for r in server.received}
        assert len(ids) == 2  # every outbound message has its own Message-ID


def test_starttls_and_auth_are_used(settings, db, tmp_path):
    with secure_server(tmp_path, "intake", "p@ss word") as server:
        url = server.url("intake", "p%40ss%20word", cafile=server.cafile)
        rt = runtime(settings, db, url)
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        out_id = send_reply(rt, inquiry_id, "Over TLS.", "U1")
        assert row(rt, out_id).state == "sent"
        assert len(server.received) == 1
        assert server.received[0].tls and server.received[0].authenticated
        assert server.checker.attempts[-1][1] == b"intake"


def test_wrong_password_is_retried_not_lost(settings, db, tmp_path):
    with secure_server(tmp_path, "intake", "right") as server:
        rt = runtime(settings, db, server.url("intake", "wrong", cafile=server.cafile))
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        out_id = send_reply(rt, inquiry_id, "Hi", "U1")  # the outbox tries at once and backs off
        stored = row(rt, out_id)
        assert stored.state == "queued" and "login refused" in stored.last_error
        owed = delivery(rt, out_id)
        assert owed.state == "pending" and owed.attempts == 1 and "login refused" in owed.last_error
        assert server.received == []


def test_server_requiring_starttls_refuses_a_plain_client(settings, db, tmp_path):
    with secure_server(tmp_path) as server:
        rt = runtime(settings, db, server.url(starttls="never"))
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
        # 530 "must issue STARTTLS" is the operator's to fix: kept queued, not failed.
        with pytest.raises(Retry):
            send_message(rt, out_id)
        assert row(rt, out_id).state == "queued"
        assert server.received == []


def test_outage_then_recovery_delivers_exactly_once(settings, db):
    port = free_port()
    rt = runtime(settings, db, f"smtp://127.0.0.1:{port}?timeout=3")
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    out_id = send_reply(rt, inquiry_id, "Sent after the outage.", "U1")  # 1: connection refused
    with DroppingServer(port) as dropping:  # 2 and 3: the relay accepts and hangs up
        assert retry_now(rt, out_id) == "pending"
        # Failing for six minutes now: past [outbox] email_delayed_after_minutes, staff are told.
        assert retry_now(rt, out_id, failing_since=dt.timedelta(minutes=6)) == "pending"
        assert dropping.connections == 2
    stored = row(rt, out_id)
    assert (stored.state, stored.attempts) == ("queued", 3)
    assert delivery(rt, out_id).attempts == 3
    delayed = events(rt, "smtp_delayed")
    assert len(delayed) == 1 and delayed[0].inquiry_id == inquiry_id and delayed[0].detail["attempts"] == 3
    # An outage of hours is still retried: the old budget of 8 attempts would have failed here.
    assert retry_now(rt, out_id, failing_since=dt.timedelta(hours=3)) == "pending"
    assert len(events(rt, "smtp_delayed")) == 1  # said once

    with plain_server(port) as server:
        assert retry_now(rt, out_id) == "sent"
        assert outbox.deliver(rt, delivery(rt, out_id).id) == "not due"  # a late duplicate job
        assert send_message(rt, out_id) == "sent"  # and the sending step itself is idempotent
        assert len(server.received) == 1
        assert server.received[0].message["Message-ID"] == f"<{stored.message_id}>"
    assert len(events(rt, "reply_sent")) == 1
    assert delivery(rt, out_id).state == "done"


def test_temporary_data_refusal_retries_and_permanent_refusal_fails(settings, db):
    recorder = Recorder(data_responses=["451 4.3.0 try again later", "550 5.1.1 no such user"])
    with plain_server(recorder=recorder) as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        out_id = send_reply(rt, inquiry_id, "Hi", "U1")  # 451: backs off
        assert row(rt, out_id).state == "queued"
        assert retry_now(rt, out_id) == "failed"  # 550: retrying can never help
        assert outbox.deliver(rt, delivery(rt, out_id).id) == "not due"
        assert server.received == []
    assert row(rt, out_id).state == "failed"
    failed = events(rt, "send_failed")
    assert len(failed) == 1 and "550" in failed[0].detail["error"]
    assert events(rt, "reply_sent") == []


def test_gives_up_at_the_deadline_not_after_a_number_of_attempts(settings, db):
    port = free_port()
    rt = runtime(settings, db, f"smtp://127.0.0.1:{port}")
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    out_id = send_reply(rt, inquiry_id, "Hi", "U1")
    for _ in range(12):  # many more attempts than the old budget: still retried
        assert retry_now(rt, out_id) == "pending"
    assert events(rt, "send_failed") == []
    # Failing for longer than [outbox] email_deadline_hours (48 by default): given up, and staff see it.
    assert retry_now(rt, out_id, failing_since=dt.timedelta(hours=49)) == "failed"
    assert row(rt, out_id).state == "failed"
    assert len(events(rt, "send_failed")) == 1


def test_a_delivery_being_sent_is_not_sent_twice_until_its_lease_expires(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        out_id = queue_only(rt, inquiry_id, "Hi")
        # Another worker claimed it a moment ago and is talking to the server right now.
        with rt.db.session() as session:
            owed = session.scalars(select(Delivery).where(Delivery.key == f"send:{out_id}")).one()
            owed.leased_until = utcnow() + dt.timedelta(minutes=5)
            owed.attempts = 1
            session.get(Message, out_id).state = "sending"
            delivery_id = owed.id
        assert outbox.deliver(rt, delivery_id) == "not due"
        assert delivery_id not in outbox.run_due(rt, now=utcnow() + dt.timedelta(minutes=1))
        assert server.received == []
        # That worker died: its lease expired, the same bytes go out once.
        with rt.db.session() as session:
            session.get(Delivery, delivery_id).leased_until = utcnow() - dt.timedelta(seconds=1)
        assert outbox.run_due(rt).get(delivery_id) == "sent"
        assert outbox.deliver(rt, delivery_id) == "not due"
        assert len(server.received) == 1


def test_without_smtp_url_the_reply_is_logged_and_marked_sent(settings, db, caplog):
    rt = runtime(settings, db, None)
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    with caplog.at_level("INFO", logger="intake.outbound.sending"):
        out_id = send_reply(rt, inquiry_id, "Logged only.", "U1")
    stored = row(rt, out_id)
    assert stored.state == "sent" and "SMTP_URL is unset" in stored.meta["delivery"]
    assert any("SMTP_URL is unset" in r.getMessage() for r in caplog.records)


def test_hard_ceiling_holds_back_mail_to_one_address(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url(), outbound={"caps": [{"max": 3, "minutes": 10}]})
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        ids = [send_reply(rt, inquiry_id, f"Reply {i}", "U1") for i in range(5)]
        states = [row(rt, i).state for i in ids]
        assert states == ["sent", "sent", "sent", "suppressed", "suppressed"]
        assert len(server.received) == 3
    hits = events(rt, "cap_hit")
    assert len(hits) == 2 and hits[0].detail["to"] == "maria.lopez@example.org"


def test_internal_notes_never_go_out(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            session.add(Message(
                inquiry_id=inquiry_id, direction="internal", kind="note", dedupe_key="note:1",
                text_body="INTERNAL: applicant seems unqualified", raw=b"", sha256="0" * 64, size=0,
                state="processed", sender_address="staff@intake.example",
            ))
        send_reply(rt, inquiry_id, "Thanks for asking.", "U1")
        data = server.received[0].data
        assert b"INTERNAL" not in data and b"unqualified" not in data
        assert server.received[0].rcpt_tos == ["maria.lopez@example.org"]  # not the note's author


def test_reply_errors_say_why(settings, db):
    rt = runtime(settings, db, None)
    with rt.db.session() as session:
        with pytest.raises(ReplyError, match="no inquiry #999"):
            queue_reply(session, 999, "Hi", "U1", settings=rt.settings)
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    with rt.db.session() as session:
        with pytest.raises(ReplyError, match="empty"):
            queue_reply(session, inquiry_id, "  \n", "U1", settings=rt.settings)


def test_the_poller_sends_a_reply_whose_kick_was_lost(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        # Queued and committed with its delivery, but the process died before the queue heard.
        out_id = queue_only(rt, inquiry_id, "Found by the poller.")
        assert outbox.run_due(rt) == {}  # still within the grace a queued job has
        later = utcnow() + rt.settings.outbox.kick_grace + dt.timedelta(seconds=1)
        ran = outbox.run_due(rt, now=later)
        assert ran[delivery(rt, out_id).id] == "sent"
        assert outbox.run_due(rt, now=later) == {}
        assert row(rt, out_id).state == "sent"
        assert len(server.received) == 1


def test_a_reply_and_its_delivery_commit_together_or_not_at_all(settings, db):
    rt = runtime(settings, db, None)
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    with pytest.raises(RuntimeError):
        with rt.db.session() as session:
            queue_reply(session, inquiry_id, "Never committed.", "U1", settings=rt.settings)
            from intake.events import record_event

            record_event(session, inquiry_id, "U1", "reply_queued", message_id=0)
            raise RuntimeError("the process dies before the commit")
    with rt.db.session() as session:
        assert session.scalar(select(Message.id).where(Message.direction == "outbound")) is None
        assert session.scalar(select(Delivery.id).where(Delivery.kind == "email.send")) is None
