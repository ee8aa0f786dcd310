"""Replies go where the conversation lives (issue 10), on SQLite and PostgreSQL.

The hijack: a follow-up "From: the applicant, Reply-To: mallory, Re: ... [#1]" with failing or
absent sender authentication. It is threaded and shown, and nothing about where staff replies go
changes; the Reply-To is offered, never used unless picked. Also: the keyed `[#ID-tag]` token,
the key kept in the database, acknowledgments to the authenticated From only, and parsing
before the processing transaction takes its lock.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from intake import inquiries, keys, mail, recipients, tickets
from intake.cli import main
from intake.models import Event, Message, Secret
from intake.outbound import acknowledge, queue_reply, send_reply
from intake.outbound.replies import ReplyError
from intake.runtime import Runtime
from intake.slack import queries as Q
from intake.jobs import InlineQueue
from tests.smtp_servers import fixture_bytes, seed_inquiry

APPLICANT = "ann@applicant.example"
SES_PASS = {"provider": "ses", "spfVerdict": "PASS", "dkimVerdict": "PASS", "dmarcVerdict": "PASS"}
SES_FAIL = {"provider": "ses", "spfVerdict": "PASS", "dkimVerdict": "GRAY", "dmarcVerdict": "FAIL",
            "mail_from": "bounce@evil.example"}


def email(*, sender: str, subject: str, message_id: str, reply_to: str | None = None,
          in_reply_to: str | None = None, body: str = "Hello, when is the deadline?") -> bytes:
    lines = [f"From: {sender}", "To: desk@fellowship.example", f"Subject: {subject}",
             f"Message-ID: {message_id}", "Date: Tue, 1 Dec 2026 10:00:00 +0000"]
    if reply_to:
        lines.append(f"Reply-To: {reply_to}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    return ("\r\n".join(lines + ["", body, ""])).encode()


def deliver(rt: Runtime, raw: bytes, meta: dict | None = None) -> inquiries.ProcessResult:
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider=(meta or {}).get("provider", "test"), meta=meta)
    with rt.db.session() as session:
        return inquiries.process_message(session, rt, stored.message_id)


def opened(rt: Runtime) -> int:
    """The applicant's inquiry, authenticated, with one staff reply (log-only SMTP)."""
    first = deliver(rt, email(sender=f"Ann Lee <{APPLICANT}>", subject="Question about the fellowship",
                              message_id="<a1@applicant.example>"), SES_PASS)
    assert first.status == "new"
    send_reply(rt, first.inquiry_id, "The deadline is 15 January.", "U_STAFF")
    return first.inquiry_id


def outbound(rt: Runtime, inquiry_id: int, kind: str | None = None) -> list[Message]:
    with rt.db.session() as session:
        query = select(Message).where(Message.inquiry_id == inquiry_id, Message.direction == "outbound")
        if kind is not None:
            query = query.where(Message.kind == kind)
        return list(session.scalars(query.order_by(Message.id)))


@pytest.mark.parametrize("authentication", ["failing", "absent"])
def test_a_forged_follow_up_does_not_redirect_replies(rt, authentication):
    inquiry_id = opened(rt)
    forged = email(sender=f"Ann Lee <{APPLICANT}>", reply_to="Ann <mallory@evil.example>",
                   subject=f"Re: Question about the fellowship [#{inquiry_id}]", message_id="<f1@evil.example>",
                   body="Please send the documents to my new address.")
    result = deliver(rt, forged, SES_FAIL if authentication == "failing" else None)
    assert (result.status, result.inquiry_id) == ("follow-up", inquiry_id)  # shown, threaded

    with rt.db.session() as session:
        assert inquiries.inquiry_detail(session, inquiry_id)["reply_to"] == APPLICANT
        stored = session.get(Message, result.message_id)
        assert stored.authentication == ("fail" if authentication == "failing" else "none")
        warnings = [e.detail for e in session.scalars(
            select(Event).where(Event.inquiry_id == inquiry_id, Event.kind == "sender_unverified"))]
        card = Q.card_data(session, inquiry_id)
        choices = Q.recipient_choices(session, inquiry_id)
    if authentication == "failing":
        assert warnings and warnings[0]["address"] == APPLICANT and warnings[0]["reply_to"] == APPLICANT
        assert any("failed sender authentication" in w for w in card.reply_warnings)
    else:
        assert warnings == []
    assert card.reply_to == APPLICANT
    assert any("mallory@evil.example" in w and "new to this conversation" in w for w in card.reply_warnings)
    assert [c.address for c in choices][:1] == [APPLICANT]
    assert any(c.address == "mallory@evil.example" and c.warning for c in choices)

    send_reply(rt, inquiry_id, "We need nothing else, thank you.", "U_STAFF")
    # (its acknowledgment, also to the applicant, is not a staff reply)
    assert [m.to_address for m in outbound(rt, inquiry_id, "reply")] == [APPLICANT, APPLICANT]

    shown = CliRunner().invoke(main, ["show", str(inquiry_id), "--json"],
                               env={"DATABASE_URL": rt.settings.database_url, "INTAKE_CONFIG": "", "SMTP_URL": ""})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["reply_to"] == APPLICANT


def test_staff_may_pick_an_offered_address_and_nothing_else(rt):
    inquiry_id = opened(rt)
    deliver(rt, email(sender=f"Ann <{APPLICANT}>", reply_to="ann.lee@work.example",
                      subject="Re: Question about the fellowship", message_id="<a2@applicant.example>",
                      in_reply_to="<a1@applicant.example>"), SES_PASS)
    with rt.db.session() as session:
        picked = queue_reply(session, inquiry_id, "Answering at work.", "U1", settings=rt.settings,
                             to_address="Ann.Lee@work.example")
        assert picked.to_address == "ann.lee@work.example"
        with pytest.raises(ReplyError, match="not one of the addresses"):
            queue_reply(session, inquiry_id, "x", "U1", settings=rt.settings, to_address="bob@elsewhere.example")
    with rt.db.session() as session:
        # Staff chose it: the conversation now lives there.
        assert recipients.reply_address(session, inquiry_id) == "ann.lee@work.example"


def test_the_ticket_tag_is_keyed_and_the_old_form_needs_a_participant(rt):
    inquiry_id = opened(rt)
    subject = outbound(rt, inquiry_id)[0].subject
    found = re.search(rf"\[#{inquiry_id}-([a-z2-7]{{6}})\]", subject)
    assert found, subject
    with rt.db.session() as session:
        assert tickets.is_valid(session, rt.settings, inquiry_id, found.group(1))
        assert not tickets.is_valid(session, rt.settings, inquiry_id + 1, found.group(1))

    colleague = deliver(rt, email(sender="Bob <bob@colleague.example>", subject=f"Re: {subject}",
                                  message_id="<b1@colleague.example>"))
    assert (colleague.status, colleague.inquiry_id) == ("follow-up", inquiry_id)  # holds the tag
    guessed = deliver(rt, email(sender="Eve <eve@stranger.example>", message_id="<e1@stranger.example>",
                                subject=f"Re: Question about the fellowship [#{inquiry_id}]"))
    assert guessed.status == "new" and guessed.inquiry_id != inquiry_id
    wrong = deliver(rt, email(sender="Eve <eve@stranger.example>", message_id="<e2@stranger.example>",
                              subject=f"Re: Other topic [#{inquiry_id}-aaaaaa]"))
    assert wrong.inquiry_id != inquiry_id
    old_form = deliver(rt, email(sender=APPLICANT, message_id="<a3@applicant.example>",
                                 subject=f"Re: Something else entirely [#{inquiry_id}]"))
    assert (old_form.status, old_form.inquiry_id) == ("follow-up", inquiry_id)
    with rt.db.session() as session:  # a new sender holding the tag does not move the replies
        assert recipients.reply_address(session, inquiry_id) == APPLICANT


def test_the_key_is_generated_once_kept_and_survives_setting_one(rt):
    with rt.db.session() as session:
        stored = keys.signing_keys(session, rt.settings)
        assert len(stored) == 1 and len(stored[0]) >= 32
        old_tag = tickets.tag(session, rt.settings, 7)
    with rt.db.session() as session:
        assert keys.signing_keys(session, rt.settings) == stored
        assert session.scalars(select(Secret.name)).all() == [keys.KEY_NAME]
    configured = dataclasses.replace(rt.settings, secret_keys=("operator-key",))
    with rt.db.session() as session:
        assert keys.signing_keys(session, configured) == [b"operator-key", stored[0]]
        new_tag = tickets.tag(session, configured, 7)
        assert new_tag != old_tag
        assert tickets.is_valid(session, configured, 7, new_tag)
        assert tickets.is_valid(session, configured, 7, old_tag)  # replies in flight still thread
        assert not tickets.is_valid(session, configured, 7, "") and not tickets.is_valid(session, configured, 7, None)


@pytest.mark.parametrize("authentication, expected", [("fail", "suppressed"), ("none", "queued"), ("pass", "queued")])
def test_acknowledgments_go_to_the_authenticated_from_only(settings, db, authentication, expected):
    rt = Runtime(dataclasses.replace(settings, smtp_url=None, from_address=None), db, queue=InlineQueue())
    inquiry_id, message_id = seed_inquiry(rt, fixture_bytes("human.eml"), category="application",
                                          authentication=authentication)
    result = acknowledge(rt, message_id)
    assert result.status == expected, result
    if expected == "suppressed":
        assert "failed authentication" in result.reason
        assert outbound(rt, inquiry_id) == []
        return
    ack = outbound(rt, inquiry_id)[0]
    assert ack.to_address == "maria.lopez@example.org"  # human.eml's From; its Reply-To is never used
    if authentication == "pass":
        assert ack.subject.startswith("Re: Question about the application deadline [#")
        assert "María" in ack.text_body
    else:  # nothing the sender wrote goes back out: no spam relay through a forged From
        assert re.fullmatch(rf"Re: Your inquiry \[#{inquiry_id}-[a-z2-7]{{6}}\]", ack.subject)
        assert "application deadline" not in ack.text_body and "María" not in ack.text_body


def test_parsing_happens_before_the_write_lock(rt, monkeypatch):
    raw = email(sender=APPLICANT, subject="Lock check", message_id="<lock@applicant.example>")
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider="test")
    url = make_url(rt.settings.database_url)
    checked = []

    def lock_is_free() -> bool:
        if url.get_backend_name() == "sqlite":
            other = sqlite3.connect(url.database, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")  # fails at once while anyone holds the write lock
                other.rollback()
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                other.close()
        engine = create_engine(rt.settings.database_url)
        try:
            with engine.begin() as conn:  # fails at once while the message row is locked
                conn.execute(text("SELECT id FROM messages WHERE id = :id FOR UPDATE NOWAIT"), {"id": stored.message_id})
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    real_parse = mail.parse

    def parse_and_check(raw_bytes, **kwargs):
        checked.append(lock_is_free())
        return real_parse(raw_bytes, **kwargs)

    monkeypatch.setattr(mail, "parse", parse_and_check)
    with rt.db.session() as session:
        assert inquiries.process_message(session, rt, stored.message_id).status == "new"
        assert not lock_is_free()  # the check itself sees a held lock
    assert checked == [True]
