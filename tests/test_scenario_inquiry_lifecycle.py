"""One inquiry's whole life across every layer, with real parts wherever they can run here.

An applicant's email arrives at the signed `/inbound/mime` webhook; the pipeline parses,
threads and classifies it; the triage card appears in (fake) Slack over the real slack_sdk
client; the applicant gets an acknowledgment from a real SMTP server (aiosmtpd); a staff member
claims the card and answers from the Reply modal with requests signed as Slack signs them; the
reply is delivered by SMTP as a proper reply; the applicant answers it and that answer threads
back onto the same inquiry and into the card's thread.
"""

from __future__ import annotations

import json
import time
from email import message_from_bytes
from email import policy

from sqlalchemy import select

from intake.app import create_app
from intake.config import Settings
from intake.db import Database
from intake.inbound import mime
from intake.models import Inquiry, Message
from intake.jobs import InlineQueue
from intake.runtime import Runtime
from intake.slack import blocks as B
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    button_payload,
    fake_slack,
    interactive_body,
    radio_value,
    signed,
    slack_env,
    text_value,
    view_submission,
    write_config,
)
from tests.smtp_servers import plain_server

SECRET = "mime-secret"
FORM = "application/x-www-form-urlencoded"

FIRST = b"""From: Nia Campbell <nia.campbell@example.org>\r
To: desk@fellowship.example.org\r
Subject: Can I apply if I graduate in June?\r
Date: Mon, 23 Nov 2026 10:00:00 +0000\r
Message-ID: <nia-1@example.org>\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
\r
Hello! I finish my master's in public policy in June. Am I eligible to apply for the\r
fellowship, and when is the application deadline? <!channel>\r
\r
Nia\r
"""


def eventually(check, timeout: float = 15.0):
    """Bolt acknowledges first and runs the listener after: wait for its effect."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def post_mime(client, raw: bytes):
    return client.post(
        "/inbound/mime", data=raw, content_type="message/rfc822",
        headers={"X-Intake-Signature": mime.sign(raw, SECRET)},
    )


def test_an_inquiry_from_email_to_reply_and_back(fake_slack, db_url, tmp_path):
    config = write_config(tmp_path / "intake.toml")
    with plain_server() as smtp:
        env = slack_env(fake_slack, db_url, config, INBOUND_HMAC_SECRET=SECRET, SMTP_URL=smtp.url())
        settings = Settings.from_env(env)
        database = Database.from_settings(settings)
        rt = Runtime(settings, database, queue=InlineQueue())  # runs every job as it is enqueued
        client = create_app(rt=rt).test_client()
        try:
            # 1. The email arrives: stored, processed, carded, acknowledged.
            answer = post_mime(client, FIRST)
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json()["status"] == "stored"
            with database.session() as session:
                inquiry = session.scalars(select(Inquiry)).one()
                inquiry_id, channel, ts = inquiry.id, inquiry.slack_channel, inquiry.slack_ts
                assert inquiry.category == "application"
            assert channel == TRIAGE_CHANNEL and ts
            card = fake_slack.messages[(channel, ts)]
            card_json = json.dumps(card["blocks"])
            assert "Can I apply if I graduate in June?" in card_json
            assert "&lt;!channel&gt;" in card_json and "<!channel>" not in card_json
            post = fake_slack.calls_to("chat.postMessage")[0].params
            assert "link_names" not in post and post.get("unfurl_links") in (False, "false", "0", 0)

            assert len(smtp.received) == 1
            ack = smtp.received[0].message
            assert smtp.received[0].rcpt_tos == ["nia.campbell@example.org"]
            assert ack["Auto-Submitted"] == "auto-replied"
            assert ack["In-Reply-To"] == "<nia-1@example.org>"

            # The provider retries the same delivery: nothing new happens anywhere.
            assert post_mime(client, FIRST).get_json()["status"] == "duplicate"
            assert len(fake_slack.calls_to("chat.postMessage")) == 1 + len(fake_slack.thread(channel, ts))
            assert len(smtp.received) == 1

            # 2. Staff claim it and answer from the Reply modal.
            claim = client.post("/slack/events", **signed(
                interactive_body(button_payload(B.A_CLAIM, str(inquiry_id), user="U100")), FORM))
            assert claim.status_code == 200
            reply = client.post("/slack/events", **signed(interactive_body(view_submission(
                B.V_REPLY,
                {"body_0": text_value("Hi Nia, yes: graduating in June is fine. The deadline is 15 January."),
                 "mode": radio_value(B.REPLY_SEND)},
                {"inquiry_id": inquiry_id, "revision": 0},
            )), FORM))
            assert reply.status_code == 200

            def reply_delivered():
                assert len(smtp.received) == 2

            eventually(reply_delivered)
            sent = smtp.received[1].message
            assert smtp.received[1].rcpt_tos == ["nia.campbell@example.org"]
            assert sent["In-Reply-To"] == "<nia-1@example.org>"
            assert f"[#{inquiry_id}-" in sent["Subject"] and sent["Subject"].startswith("Re: ")
            assert "Auto-Submitted" not in sent
            assert "The deadline is 15 January." in sent.get_body(("plain",)).get_content()
            def reply_recorded():
                with database.session() as session:
                    inquiry = session.get(Inquiry, inquiry_id)
                    assert (inquiry.status, inquiry.assignee) == ("waiting", "U100")

            eventually(reply_recorded)
            with database.session() as session:
                inquiry = session.get(Inquiry, inquiry_id)
                assert inquiry.first_response_at is not None
                outbound = session.scalars(select(Message).where(
                    Message.direction == "outbound", Message.kind == "reply")).one()
                assert outbound.state == "sent"
                assert f"<{outbound.message_id}>" == sent["Message-ID"]
                our_message_id = sent["Message-ID"]
            def claim_shown():
                lines = [m["text"] for m in fake_slack.thread(channel, ts)]
                assert any("U100" in line and "claim" in line.lower() for line in lines), lines

            eventually(claim_shown)

            # 3. The applicant answers our reply from another client: it threads back.
            answer_raw = (
                "From: Nia Campbell <Nia.Campbell@example.org>\r\n"
                "To: desk@fellowship.example.org\r\n"
                f"Subject: {sent['Subject']}\r\n"
                "Message-ID: <nia-2@example.org>\r\n"
                f"In-Reply-To: {our_message_id}\r\n"
                f"References: <nia-1@example.org> {our_message_id}\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                "Wonderful, thank you! I will send it next week.\r\n\r\n"
                "> Hi Nia, yes: graduating in June is fine.\r\n"
            ).encode()
            assert post_mime(client, answer_raw).status_code == 200
            with database.session() as session:
                messages = session.scalars(select(Message).where(Message.inquiry_id == inquiry_id)).all()
                inbound = [m for m in messages if m.direction == "inbound"]
                assert [m.message_id for m in inbound] == ["nia-1@example.org", "nia-2@example.org"]
                assert inbound[1].latest_reply.strip() == "Wonderful, thank you! I will send it next week."
                assert session.get(Inquiry, inquiry_id).status == "open"
                assert session.scalars(select(Inquiry)).all().__len__() == 1
            thread_blob = json.dumps(fake_slack.thread(channel, ts))
            assert "Wonderful, thank you!" in thread_blob
            assert len(smtp.received) == 2  # a follow-up is never acknowledged
        finally:
            database.dispose()


def test_raw_bytes_of_the_webhook_are_what_is_stored(fake_slack, db_url, tmp_path):
    """What the provider posted is what `intake show` reports: same sha256, same size."""
    import hashlib

    env = slack_env(fake_slack, db_url, write_config(tmp_path / "intake.toml"), INBOUND_HMAC_SECRET=SECRET)
    settings = Settings.from_env(env)
    database = Database.from_settings(settings)
    try:
        client = create_app(rt=Runtime(settings, database, queue=InlineQueue())).test_client()
        raw = FIRST.replace(b"<nia-1@example.org>", b"<nia-raw@example.org>") + b"\xff\x00 odd tail"
        assert post_mime(client, raw).status_code == 200
        with database.session() as session:
            stored = session.scalars(select(Message).where(Message.direction == "inbound")).one()
            assert stored.raw == raw
            assert (stored.sha256, stored.size) == (hashlib.sha256(raw).hexdigest(), len(raw))
            parsed = message_from_bytes(stored.raw, policy=policy.default)
            assert parsed["Message-ID"] == "<nia-raw@example.org>"
    finally:
        database.dispose()
