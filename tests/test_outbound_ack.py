"""Auto-acknowledgments over a real SMTP server: sent to people once, never to robots, capped."""

from __future__ import annotations

import dataclasses
import re
import hashlib

import pytest
from sqlalchemy import func, select

from intake.models import Event, Message
from intake import outbox
from intake.outbound import acknowledge, send_reply
from intake.jobs import InlineQueue
from intake.runtime import Runtime
from tests.conftest import corpus_dir
from tests.smtp_servers import fixture_bytes, plain_server, seed_inquiry

FROM = "fellowship@intake.example"

LOOP_FIXTURES = [
    "auto_submitted.eml",
    "exchange_ooo.eml",
    "list.eml",
    "bulk.eml",
    "bounce_dsn.eml",
    "noreply.eml",
    "postmaster.eml",
    "own_address.eml",
    "empty_return_path.eml",
    "mdn.eml",
    "reply_to_robot.eml",
    "x_autoreply.eml",
]

CORPUS_LOOP_CASES = [
    ("flanker-messages", "bounce_broken-mime.eml"),
    ("flanker-messages", "bounce_delayed.eml"),
    ("flanker-messages", "bounce_delayed-broken.eml"),
    ("flanker-messages", "bounce_gmail-invalid-address.eml"),
    ("flanker-messages", "bounce_gmail-no-dns.eml"),
    ("flanker-messages", "bounce_mailbox-full.eml"),
    ("flanker-messages", "bounce_no-mx.eml"),
    ("flanker-messages", "bounce_office365.eml"),
    ("flanker-messages", "bounce_zed.eml"),
    ("flanker-messages", "complaints_aol.eml"),
    ("flanker-messages", "complaints_yahoo.eml"),
    ("flanker-messages", "disposition-notification.eml"),
    ("cpython-email", "msg_16.txt"),
    ("cpython-email", "msg_25.txt"),
    ("cpython-email", "msg_43.txt"),
]


def runtime(settings, db, smtp_url: str | None, **toml) -> Runtime:
    merged = {**settings.toml, **toml}
    return Runtime(dataclasses.replace(settings, smtp_url=smtp_url, from_address=FROM, toml=merged), db, queue=InlineQueue())


def outbound_count(rt: Runtime) -> int:
    with rt.db.session() as session:
        return session.scalar(select(func.count(Message.id)).where(Message.direction == "outbound"))


def events(rt: Runtime, kind: str) -> list[Event]:
    with rt.db.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


@pytest.fixture
def smtp():
    with plain_server() as server:
        yield server


def test_a_person_gets_one_rfc3834_acknowledgment(settings, db, smtp):
    rt = runtime(settings, db, smtp.url())
    inquiry_id, message_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
    result = acknowledge(rt, message_id)
    assert result.status == "queued"
    assert acknowledge(rt, message_id).status == "exists"  # a retried delivery sends nothing new
    assert outbox.run_due(rt, fresh_too=True) == {}  # and nothing is left owed

    assert len(smtp.received) == 1
    got = smtp.received[0]
    msg = got.message
    assert got.rcpt_tos == ["maria.lopez@example.org"]  # the authenticated From, never a Reply-To
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<CAF1234human@mail.example.org>"
    assert msg["References"] == "<older-1@mail.example.org> <CAF1234human@mail.example.org>"
    assert re.fullmatch(rf"Re: Question about the application deadline \[#{inquiry_id}-[a-z2-7]{{6}}\]", msg["Subject"])
    body = msg.get_content()
    assert body.startswith("Hello María,")
    assert f"#{inquiry_id}" in body
    assert "close on the date shown" not in body  # answers are off unless the operator allows
    with rt.db.session() as session:
        ack = session.get(Message, result.outbound_id)
        assert (ack.kind, ack.state, ack.dedupe_key) == ("acknowledgment", "sent", f"ack:{message_id}")
        assert msg["Message-ID"] == f"<{ack.message_id}>"
    assert [e.detail["to"] for e in events(rt, "ack_sent")] == ["maria.lopez@example.org"]


@pytest.mark.parametrize("name", LOOP_FIXTURES)
def test_no_acknowledgment_to_automated_mail(settings, db, smtp, name):
    rt = runtime(settings, db, smtp.url())
    _, message_id = seed_inquiry(rt, fixture_bytes(name), category="general")
    result = acknowledge(rt, message_id)
    assert result.status == "suppressed", result
    assert smtp.received == [] and outbound_count(rt) == 0
    suppressed = events(rt, "ack_suppressed")
    assert len(suppressed) == 1 and suppressed[0].detail["reasons"]


@pytest.mark.corpus
@pytest.mark.parametrize("folder,name", CORPUS_LOOP_CASES)
def test_no_acknowledgment_to_corpus_bounces_and_auto_replies(settings, db, smtp, folder, name):
    raw = (corpus_dir(folder) / name).read_bytes()
    rt = runtime(settings, db, smtp.url())
    _, message_id = seed_inquiry(rt, raw, category="general")
    assert acknowledge(rt, message_id).status == "suppressed"
    assert smtp.received == [] and outbound_count(rt) == 0


def test_our_own_acknowledgment_coming_back_gets_none(settings, db, smtp):
    rt = runtime(settings, db, smtp.url())
    _, message_id = seed_inquiry(rt, fixture_bytes("human.eml"))
    acknowledge(rt, message_id)
    ours = smtp.received[0].data
    # The applicant's robot bounces our ack straight back as a "new" message.
    _, echo_id = seed_inquiry(rt, ours.replace(b"To: maria", b"X-Was-To: maria"))
    assert acknowledge(rt, echo_id).status == "suppressed"
    assert len(smtp.received) == 1


def test_follow_ups_and_disabled_categories_get_none(settings, db, smtp):
    rt = runtime(settings, db, smtp.url(), acknowledgments={"categories": ["application"]})
    inquiry_id, first_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
    raw = fixture_bytes("human.eml").replace(b"CAF1234human", b"CAF5678second")
    with rt.db.session() as session:
        follow = Message(
            inquiry_id=inquiry_id, direction="inbound", dedupe_key="mid:second", raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), sender_address="maria.lopez@example.org",
        )
        session.add(follow)
        session.flush()
        follow_id = follow.id
    assert acknowledge(rt, follow_id).status == "skipped"
    _, press_id = seed_inquiry(rt, fixture_bytes("human.eml").replace(b"CAF1234human", b"p1"), category="press")
    result = acknowledge(rt, press_id)
    assert (result.status, result.reason) == ("skipped", "acknowledgments are off for press")
    assert outbound_count(rt) == 0 and events(rt, "ack_suppressed") == []


@pytest.mark.parametrize("category,status,automated", [("spam", "new", False), ("automated", "new", False),
                                                       ("general", "spam", False), ("general", "new", True)])
def test_spam_and_automated_inquiries_get_none(settings, db, smtp, category, status, automated):
    rt = runtime(settings, db, smtp.url(), acknowledgments={"categories": ["general", "spam", "automated"]})
    _, message_id = seed_inquiry(rt, fixture_bytes("human.eml"), category=category, status=status)
    if automated:
        with rt.db.session() as session:
            session.get(Message, message_id).automated = True
    assert acknowledge(rt, message_id).status == "suppressed"
    assert smtp.received == []


def test_one_acknowledgment_per_sender_per_day(settings, db, smtp):
    rt = runtime(settings, db, smtp.url())
    _, first = seed_inquiry(rt, fixture_bytes("human.eml"))
    _, second = seed_inquiry(rt, fixture_bytes("human.eml").replace(b"CAF1234human", b"CAF9999other"))
    assert acknowledge(rt, first).status == "queued"
    second_result = acknowledge(rt, second)
    assert second_result.status == "capped" and "within 24 h" in second_result.reason
    assert len(smtp.received) == 1
    capped = events(rt, "ack_suppressed")
    assert capped[-1].detail["cap"] == "per_sender"


def test_per_sender_window_is_configurable(settings, db, smtp):
    rt = runtime(settings, db, smtp.url(), acknowledgments={"per_sender_hours": 0})
    _, first = seed_inquiry(rt, fixture_bytes("human.eml"))
    _, second = seed_inquiry(rt, fixture_bytes("human.eml").replace(b"CAF1234human", b"CAF9999other"))
    acknowledge(rt, first)
    acknowledge(rt, second)
    assert len(smtp.received) == 2


def test_hard_ceiling_counts_all_mail_to_the_address(settings, db, smtp):
    rt = runtime(settings, db, smtp.url(), outbound={"caps": [{"max": 2, "minutes": 10}]})
    inquiry_id, _ = seed_inquiry(rt, fixture_bytes("human.eml"))
    send_reply(rt, inquiry_id, "One", "U1")
    send_reply(rt, inquiry_id, "Two", "U1")
    _, new_id = seed_inquiry(rt, fixture_bytes("human.eml").replace(b"CAF1234human", b"CAFnew"))
    result = acknowledge(rt, new_id)
    assert result.status == "capped"
    hits = events(rt, "cap_hit")
    assert len(hits) == 1 and hits[0].detail["cap"] == "2 in 10 minutes"
    assert len(smtp.received) == 2


def test_ack_includes_the_approved_answer_only_when_allowed(settings, db, smtp):
    rt = runtime(settings, db, smtp.url(), auto_answer={"categories": ["application"]})
    _, message_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
    acknowledge(rt, message_id)
    body = smtp.received[0].message.get_content()
    assert "this may already answer your question" in body
    assert "Applications for the next fellowship cohort close" in body
    with rt.db.session() as session:
        ack = session.scalars(select(Message).where(Message.kind == "acknowledgment")).one()
        assert ack.meta["answer_key"] == "deadline"


def test_operator_templates_and_placeholders(settings, db, smtp):
    rt = runtime(
        settings, db, smtp.url(),
        acknowledgments={"templates": {"application": "Hi {first_name}! Ref {reference}. {unknown} {subject}"}},
        outbound={"from_name": "Fellowship Desk", "signature": "-- \nThe Desk"},
    )
    inquiry_id, message_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application")
    acknowledge(rt, message_id)
    msg = smtp.received[0].message
    body = msg.get_content()
    assert body.startswith(f"Hi María! Ref #{inquiry_id}. {{unknown}} Question about the application deadline")
    assert body.rstrip().endswith("The Desk")
    assert msg["From"] == f"Fellowship Desk <{FROM}>"


def test_header_injection_from_an_applicant_goes_nowhere(settings, db, smtp):
    rt = runtime(settings, db, smtp.url())
    inquiry_id, message_id = seed_inquiry(rt, fixture_bytes("injection.eml"))
    acknowledge(rt, message_id)
    send_reply(rt, inquiry_id, "Reply", "U1")
    assert len(smtp.received) == 2
    for got in smtp.received:
        assert got.rcpt_tos == ["eve@example.org"]
        head = got.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith((" ", "\t"))]
        assert "Bcc" not in names and len(names) == len(set(names))  # no injected header
        assert [a.addr_spec for a in got.message["To"].addresses] == ["eve@example.org"]
        assert got.message["Subject"].startswith("Re: Hello Bcc: victim@example.com [#")


def test_log_only_mode_acknowledges_without_smtp(settings, db):
    rt = Runtime(dataclasses.replace(settings, smtp_url=None, from_address=None), db, queue=InlineQueue())
    _, message_id = seed_inquiry(rt, fixture_bytes("human.eml"))
    assert acknowledge(rt, message_id).status == "queued"
    with rt.db.session() as session:
        ack = session.scalars(select(Message).where(Message.kind == "acknowledgment")).one()
        assert ack.state == "sent" and ack.meta["delivery"].startswith("logged only")


def test_inquiries_logged_from_slack_and_disabled_acks_get_none(settings, db, smtp):
    rt = runtime(settings, db, smtp.url())
    _, message_id = seed_inquiry(rt, fixture_bytes("human.eml"))
    with rt.db.session() as session:
        session.get(Message, message_id).source = "slack"
    assert acknowledge(rt, message_id).status == "skipped"
    off = runtime(settings, db, smtp.url(), acknowledgments={"enabled": False})
    _, other_id = seed_inquiry(off, fixture_bytes("human.eml").replace(b"CAF1234human", b"CAFoff"))
    assert acknowledge(off, other_id).reason == "acknowledgments are off"
    assert smtp.received == []


def test_acknowledgments_can_use_the_null_envelope_sender(settings, db, smtp):
    rt = runtime(settings, db, smtp.url(), acknowledgments={"null_envelope_sender": True})
    inquiry_id, message_id = seed_inquiry(rt, fixture_bytes("human.eml"))
    acknowledge(rt, message_id)
    send_reply(rt, inquiry_id, "A person's reply keeps our address for bounces.", "U1")
    assert [r.mail_from for r in smtp.received] == ["<>", FROM]
    assert smtp.received[0].message["From"] == FROM  # the header From is unchanged
