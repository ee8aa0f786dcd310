"""Slack's side of issue 10: senders escaped once, the card's reply warnings, and the reply
modal's recipient choice, from the pure builders to a signed view submission."""

from __future__ import annotations

import json

from flask import Flask
import pytest
from sqlalchemy import select

from intake.models import Message
from intake.slack import blocks as B
from intake.slack.app import build_bolt_app, register_flask
from tests.fakeslack import (  # noqa: F401  (fixtures)
    fake_slack,
    interactive_body,
    make_inquiry,
    radio_value,
    signed,
    slack_config,
    slack_rt,
    text_value,
    view_submission,
)


def all_text(blocks) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_thread_lines_and_modals_escape_the_sender_once():
    label = B.sender_label("Tom & Jerry", "tom@example.org")
    assert label == "Tom & Jerry (tom@example.org)"
    line = B.followup_line(inquiry_id=1, direction="inbound", sender=label, subject="s", body="b")
    assert "Follow-up from Tom &amp; Jerry (tom@example.org)" in line.text
    assert "&amp;amp;" not in all_text(line.blocks)
    modal = B.reply_modal(inquiry_id=1, subject="s", sender=label, latest="x")
    assert "From Tom &amp; Jerry" in all_text(modal["blocks"]) and "&amp;amp;" not in all_text(modal["blocks"])
    full = B.full_text_modal(inquiry_id=1, subject="s", sender=label, text="x")
    assert "&amp;amp;" not in all_text(full["blocks"])
    assert B.sender_label(None, None) == "unknown sender"


def test_the_card_says_where_replies_go_and_warns_inertly():
    card = B.CardData(
        inquiry_id=3, subject="s", sender_name="Ann", sender_address="ann@example.org", status="open",
        category="application", reply_to="ann@example.org",
        reply_warnings=["Reply-To <!channel> <mailto:m@evil.example|ann@example.org> is new"],
    )
    text = all_text(B.triage_card(card, ["application"]).blocks)
    assert "*Replies go to* ann@example.org" in text
    assert ":warning: Reply-To &lt;!channel&gt; &lt;mailto:m@evil.example|ann@example.org&gt; is new" in text
    assert "<!channel>" not in text


def test_the_reply_modal_offers_the_conversation_address_first():
    choices = [B.RecipientChoice("ann@example.org", "Ann <ann@example.org>", "the address that opened the inquiry"),
               B.RecipientChoice("m@evil.example", "m@evil.example", "Reply-To of a message", warning=True)]
    modal = B.reply_modal(inquiry_id=4, subject="s", sender="Ann", latest="x", recipients=choices)
    block = next(b for b in modal["blocks"] if b.get("block_id") == "recipient")
    options = block["element"]["options"]
    assert block["element"]["initial_option"]["value"] == "ann@example.org"
    assert [o["value"] for o in options] == ["ann@example.org", "m@evil.example"]
    assert options[1]["text"]["text"].startswith("⚠") and options[1]["text"]["type"] == "plain_text"
    single = B.reply_modal(inquiry_id=4, subject="s", sender="Ann", latest="x", recipients=choices[:1])
    assert not any(b.get("block_id") == "recipient" for b in single["blocks"])
    assert "The email goes to Ann &lt;ann@example.org&gt;" in all_text(single["blocks"])


def test_the_unverified_sender_line_is_escaped():
    line = B.event_line("sender_unverified", "system",
                        {"address": "<!here>", "reasons": ["dmarc=fail (SES)"], "reply_to": "ann@example.org"}, 5)
    assert "failed sender authentication (dmarc=fail (SES)); replies still go to ann@example.org" in line.text
    assert "<!here>" not in line.text


@pytest.fixture
def web(slack_rt):
    flask_app = Flask("test")
    register_flask(flask_app, slack_rt, bolt_app=build_bolt_app(slack_rt, process_before_response=True))
    return flask_app.test_client()


def submit_reply(web, inquiry_id: int, recipient: str | None):
    values = {"body_0": text_value("Answer."), "mode": radio_value(B.REPLY_SEND)}
    if recipient:
        values["recipient"] = radio_value(recipient)
    payload = view_submission(B.V_REPLY, values, {"inquiry_id": inquiry_id, "revision": 0})
    return web.post("/slack/events", **signed(interactive_body(payload), "application/x-www-form-urlencoded"))


def test_a_submitted_recipient_is_used_only_when_offered(web, slack_rt):
    inquiry_id = make_inquiry(slack_rt, sender="ann@example.org")
    with slack_rt.db.session() as session:
        first = session.scalars(select(Message).where(Message.inquiry_id == inquiry_id)).one()
        first.reply_to = "ann.work@example.org"
    tampered = submit_reply(web, inquiry_id, "someone@else.example")
    assert tampered.status_code == 200 and "not one of the addresses" in json.dumps(tampered.get_json())
    assert submit_reply(web, inquiry_id, "ann.work@example.org").status_code == 200
    assert submit_reply(web, inquiry_id, None).status_code == 200
    with slack_rt.db.session() as session:
        sent = list(session.scalars(select(Message.to_address).where(Message.direction == "outbound")
                                    .order_by(Message.id)))
    # Picked once, the work address is where the conversation lives from then on.
    assert sent == ["ann.work@example.org", "ann.work@example.org"]
