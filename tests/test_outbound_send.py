"""Staff replies over real SMTP servers: headers, threading, TLS + AUTH, outages, exactly once."""

from __future__ import annotations

import dataclasses
import re
import datetime as dt

import pytest
from sqlalchemy import select

from intake.models import Event, Inquiry, Message, utcnow
from intake.outbound import TransientSendError, queue_reply, send_message, send_reply
from intake.outbound.replies import ReplyError
from intake.runtime import Runtime
from tests.smtp_servers import DroppingServer, Recorder, fixture_bytes, free_port, plain_server, secure_server, seed_inquiry

FROM = "fellowship@intake.example"


def runtime(settings, db, smtp_url: str | None, **toml) -> Runtime:
    merged = {**settings.toml, **toml}
    return Runtime(dataclasses.replace(settings, smtp_url=smtp_url, from_address=FROM, toml=merged), db)


def events(rt: Runtime, kind: str) -> list[Event]:
    with rt.db.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def row(rt: Runtime, message_id: int) -> Message:
    with rt.db.session() as session:
        return session.get(Message, message_id)


def test_reply_is_received_once_with_threading_headers(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, inbound_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
        out_id = send_reply(rt, inquiry_id, "Hello María,\n\nThe deadline is 1 December.", "U_STAFF")
        # The job is idempotent: running it again must not send a second copy.
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
        with rt.db.session() as session:
            out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
        with pytest.raises(TransientSendError):
            send_message(rt, out_id)
        stored = row(rt, out_id)
        assert stored.state == "queued" and "login refused" in stored.last_error
        assert server.received == []


def test_server_requiring_starttls_refuses_a_plain_client(settings, db, tmp_path):
    with secure_server(tmp_path) as server:
        rt = runtime(settings, db, server.url(starttls="never"))
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
        # 530 "must issue STARTTLS" is the operator's to fix: kept queued, not failed.
        with pytest.raises(TransientSendError):
            send_message(rt, out_id)
        assert row(rt, out_id).state == "queued"
        assert server.received == []


def test_outage_then_recovery_delivers_exactly_once(settings, db):
    port = free_port()
    rt = runtime(settings, db, f"smtp://127.0.0.1:{port}?timeout=3")
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    with rt.db.session() as session:
        out_id = queue_reply(session, inquiry_id, "Sent after the outage.", "U1", settings=rt.settings).id

    with pytest.raises(TransientSendError):  # 1: nothing listening: connection refused
        send_message(rt, out_id)
    with DroppingServer(port) as dropping:  # 2 and 3: the relay accepts and hangs up
        for _ in range(2):
            with pytest.raises(TransientSendError):
                send_message(rt, out_id)
        assert dropping.connections == 2
    stored = row(rt, out_id)
    assert (stored.state, stored.attempts) == ("queued", 3)
    delayed = events(rt, "smtp_delayed")
    assert len(delayed) == 1 and delayed[0].inquiry_id == inquiry_id and delayed[0].detail["attempts"] == 3

    with plain_server(port) as server:
        assert send_message(rt, out_id) == "sent"
        assert send_message(rt, out_id) == "sent"  # a late duplicate job changes nothing
        assert len(server.received) == 1
        assert server.received[0].message["Message-ID"] == f"<{stored.message_id}>"
    assert len(events(rt, "reply_sent")) == 1


def test_temporary_data_refusal_retries_and_permanent_refusal_fails(settings, db):
    recorder = Recorder(data_responses=["451 4.3.0 try again later", "550 5.1.1 no such user"])
    with plain_server(recorder=recorder) as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
        with pytest.raises(TransientSendError):
            send_message(rt, out_id)
        assert row(rt, out_id).state == "queued"
        assert send_message(rt, out_id) == "failed"  # 550: retrying can never help
        assert send_message(rt, out_id) == "failed"
        assert server.received == []
    failed = events(rt, "send_failed")
    assert len(failed) == 1 and "550" in failed[0].detail["error"]
    assert events(rt, "reply_sent") == []


def test_gives_up_after_max_attempts(settings, db):
    port = free_port()
    rt = runtime(settings, db, f"smtp://127.0.0.1:{port}", outbound={"max_attempts": 2})
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    with rt.db.session() as session:
        out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
    with pytest.raises(TransientSendError):
        send_message(rt, out_id)
    assert send_message(rt, out_id) == "failed"
    assert len(events(rt, "send_failed")) == 1


def test_a_row_being_sent_is_not_sent_twice_until_its_lease_expires(settings, db):
    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            out_id = queue_reply(session, inquiry_id, "Hi", "U1", settings=rt.settings).id
            # Another worker claimed it a moment ago and is talking to the server right now.
            session.get(Message, out_id).state = "sending"
            session.get(Message, out_id).processed_at = utcnow()
        assert send_message(rt, out_id) == "sending"
        assert server.received == []
        # That worker died an hour ago: the lease expired, the same bytes go out once.
        with rt.db.session() as session:
            session.get(Message, out_id).processed_at = utcnow() - dt.timedelta(hours=1)
        assert send_message(rt, out_id) == "sent"
        assert send_message(rt, out_id) == "sent"
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


def test_the_sweeper_sends_a_reply_whose_job_was_lost(settings, db):
    from intake.pipeline import sweep

    with plain_server() as server:
        rt = runtime(settings, db, server.url())
        inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
        with rt.db.session() as session:
            # Queued and committed, but the process died before enqueueing outbound.send.
            reply = queue_reply(session, inquiry_id, "Found by the sweeper.", "U1", settings=rt.settings)
            reply.created_at = utcnow() - dt.timedelta(minutes=10)
            out_id = reply.id
        sweep(rt)
        sweep(rt)
        assert row(rt, out_id).state == "sent"
        assert len(server.received) == 1
