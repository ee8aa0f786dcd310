"""Slack after an erasure, with the real slack_sdk against the fake Web API: the person's cards
become a placeholder, the thread lines that quote them go, the conversations that named them are
re-rendered without them; and the "Forget this person" shortcut for privacy admins only."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from flask import Flask
from sqlalchemy import select

from intake import inquiries
from intake.config import Settings
from intake.db import Database
from intake.models import Inquiry
from intake.pipeline import process_stored
from intake.privacy import run
from intake.privacy.erasure import SlackCleanup
from intake.runtime import Runtime
from intake.slack import blocks as B
from intake.slack.app import build_bolt_app, register_flask
from intake.slack.erasure import cleanup
from intake.slack.forget import FORGET_CALLBACK
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    FakeSlack,
    RecordingQueue,
    fake_slack,
    interactive_body,
    load_fixture,
    signed,
    slack_env,
    view_submission,
)
from tests.privacy_helpers import BOB, JANE, JANE_NAME, PHRASE, email

ADMIN, STAFF = "U500", "U100"


@pytest.fixture
def rt(fake_slack, db_url, tmp_path):
    config = tmp_path / "intake.toml"
    config.write_text('[slack]\npost_interval_seconds = 0\nburst_minutes = 0\n[privacy]\nadmin_usergroup = "S0PRIV"\n')
    fake_slack.usergroups["S0PRIV"] = [ADMIN]
    fake_slack.default_members = [ADMIN, STAFF]
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    runtime = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def web(rt):
    flask_app = Flask("test")
    register_flask(flask_app, rt, bolt_app=build_bolt_app(rt, process_before_response=True))
    return flask_app.test_client()


def post(web, payload):
    return web.post("/slack/events", **signed(interactive_body(payload), "application/x-www-form-urlencoded"))


def arrive(rt, raw: bytes):
    """Store and process; the Slack jobs that follow (card, thread line) run against the fake."""
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider="test")
    return process_stored(rt, stored.message_id)


def card_of(rt, inquiry_id) -> tuple[str, str]:
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, inquiry_id)
        return inquiry.slack_channel, inquiry.slack_ts


@pytest.fixture
def cards(rt, fake_slack):
    jane = arrive(rt, email(sender=f"{JANE_NAME} <{JANE}>", subject="Deferral", message_id="<j1@mail.example>",
                            body=f"My {PHRASE} needs me this spring."))
    arrive(rt, email(sender=f"{JANE_NAME} <{JANE}>", subject="Re: Deferral", in_reply_to="<j1@mail.example>",
                     body=f"Also the {PHRASE} again."))
    with rt.db.session() as session:  # the note's line is owed with it, and delivered on commit
        inquiries.add_note(session, jane.inquiry_id, f"She mentioned the {PHRASE}.", STAFF)
    bob = arrive(rt, email(sender=f"Bob Builder <{BOB}>", subject="Hosting fellows", message_id="<b1@city.example>",
                           body=f"Ask {JANE} about us.", cc=f"{JANE_NAME} <{JANE}>"))
    arrive(rt, email(sender=f"Bob Builder <{BOB}>", subject="Re: Hosting fellows", in_reply_to="<b1@city.example>",
                     body=f"Again: {JANE} knows us."))
    channel, ts = card_of(rt, jane.inquiry_id)
    assert len(fake_slack.thread(channel, ts)) == 2  # the follow-up and the note
    return {"jane": jane.inquiry_id, "bob": bob.inquiry_id}


def everything_in_slack(fake: FakeSlack) -> str:
    return json.dumps(fake.posted()).lower()


def test_forget_replaces_cards_and_deletes_the_lines_that_quote_them(rt, fake_slack, cards):
    assert JANE in everything_in_slack(fake_slack) and PHRASE in everything_in_slack(fake_slack)
    jane_channel, jane_ts = card_of(rt, cards["jane"])
    bob_channel, bob_ts = card_of(rt, cards["bob"])
    run.forget_person(rt, JANE, "cli:tester")
    shown = everything_in_slack(fake_slack)
    assert JANE not in shown and PHRASE not in shown and JANE_NAME.lower() not in shown
    placeholder = fake_slack.messages[(jane_channel, jane_ts)]
    assert "erased at the person's request" in json.dumps(placeholder["blocks"])
    assert fake_slack.thread(jane_channel, jane_ts) == []
    # Bob's card and follow-up line stay, re-rendered without her.
    bob_card = fake_slack.messages[(bob_channel, bob_ts)]
    assert "Hosting fellows" in bob_card["text"]
    line = fake_slack.thread(bob_channel, bob_ts)
    assert len(line) == 1 and "[erased] knows us" in json.dumps(line[0]["blocks"])


def test_cleanup_is_idempotent_and_tolerates_what_is_gone(rt, fake_slack, cards):
    channel, ts = card_of(rt, cards["jane"])
    lines = [m["ts"] for m in fake_slack.thread(channel, ts)]
    plan = SlackCleanup(channel, ts, "erased", inquiry_ids=[cards["jane"]], lines=lines,
                        at=dt.datetime(2027, 1, 2, tzinfo=dt.timezone.utc).isoformat())
    assert cleanup(rt, plan) == "erased: -2 ~0"
    assert cleanup(rt, plan) == "erased: -0 ~0"
    assert len(fake_slack.calls_to("chat.update", ok_only=True)) >= 2
    fake_slack.error("chat.update", "message_not_found")
    cleanup(rt, plan)  # a card someone deleted by hand: nothing left to do, no error


def test_delete_removes_the_card(rt, fake_slack, cards):
    channel, ts = card_of(rt, cards["bob"])
    run.delete_inquiry(rt, cards["bob"], "cli:tester")
    assert (channel, ts) not in fake_slack.messages
    assert fake_slack.thread(channel, ts) == []


def test_a_slack_error_is_raised_for_the_queue_to_retry(rt, fake_slack, cards):
    from slack_sdk.errors import SlackApiError

    channel, ts = card_of(rt, cards["jane"])
    fake_slack.error("chat.delete", "internal_error")
    plan = SlackCleanup(channel, ts, "deleted", lines=[])
    with pytest.raises(SlackApiError):
        cleanup(rt, plan)


# ---- the shortcut -----------------------------------------------------------------------------


def shortcut(channel: str, ts: str, user: str) -> dict:
    payload = load_fixture("shortcut_message.json")
    payload.update(callback_id=FORGET_CALLBACK, channel={"id": channel, "name": "triage"})
    payload["user"]["id"] = user
    payload["message"].update(ts=ts, user="UBOT", text="Inquiry card")
    return payload


def test_only_privacy_admins_may_forget(web, rt, fake_slack, cards):
    channel, ts = card_of(rt, cards["jane"])
    post(web, shortcut(channel, ts, STAFF))  # a triage member, not a privacy admin
    view = fake_slack.calls_to("views.open")[-1].params["view"]
    assert view["title"]["text"] == "Not allowed"
    assert fake_slack.calls_to("usergroups.users.list")[-1].params["usergroup"] == "S0PRIV"
    # A forged submission from a non-admin changes nothing either.
    meta = {"inquiry_id": cards["jane"], "address_hmac": "x"}
    response = post(web, view_submission(B.V_FORGET, {}, meta, user=STAFF))
    assert json.loads(response.data)["view"]["title"]["text"] == "Not allowed"
    with rt.db.session() as session:
        assert session.get(Inquiry, cards["jane"]) is not None


def test_forget_this_person_from_a_card(web, rt, fake_slack, cards):
    channel, ts = card_of(rt, cards["jane"])
    post(web, shortcut(channel, ts, ADMIN))
    view = fake_slack.calls_to("views.open")[-1].params["view"]
    assert view["callback_id"] == B.V_FORGET and view["submit"]["text"] == "Erase"
    assert JANE in json.dumps(view["blocks"]) and f"#{cards['jane']}" in json.dumps(view["blocks"])
    meta = json.loads(view["private_metadata"])
    assert JANE not in view["private_metadata"]  # the modal carries a keyed hash, not the address
    response = post(web, view_submission(B.V_FORGET, {}, meta, user=ADMIN))
    assert json.loads(response.data)["response_action"] == "update"
    done = fake_slack.calls_to("views.update")[-1].params["view"]
    assert done["title"]["text"] == "Erased"
    with rt.db.session() as session:
        assert session.get(Inquiry, cards["jane"]) is None
        assert session.get(Inquiry, cards["bob"]) is not None
    assert JANE not in everything_in_slack(fake_slack)
    # Submitted twice (a double click): the second finds nothing left to erase.
    again = post(web, view_submission(B.V_FORGET, {}, meta, user=ADMIN))
    assert "erased or changed meanwhile" in json.dumps(json.loads(again.data)["view"])


def test_the_shortcut_on_a_thread_line_finds_its_card_and_elsewhere_explains(web, rt, fake_slack, cards):
    channel, ts = card_of(rt, cards["jane"])
    line = fake_slack.thread(channel, ts)[0]
    payload = shortcut(channel, line["ts"], ADMIN)
    payload["message"]["thread_ts"] = ts
    post(web, payload)
    assert fake_slack.calls_to("views.open")[-1].params["view"]["callback_id"] == B.V_FORGET
    post(web, shortcut("C999", "1.000001", ADMIN))
    assert "not an inquiry's card" in json.dumps(fake_slack.calls_to("views.open")[-1].params["view"])


def test_no_admin_group_means_nobody(fake_slack, db_url, tmp_path):
    config = tmp_path / "intake.toml"
    config.write_text("[slack]\npost_interval_seconds = 0\n")
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    runtime = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    flask_app = Flask("t")
    register_flask(flask_app, runtime, bolt_app=build_bolt_app(runtime, process_before_response=True))
    post(flask_app.test_client(), shortcut(TRIAGE_CHANNEL, "1.000001", "U100"))
    assert fake_slack.calls_to("views.open")[-1].params["view"]["title"]["text"] == "Not allowed"
    runtime.db.dispose()


# ---- builders ---------------------------------------------------------------------------------


def test_placeholder_cards_carry_no_text():
    at = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    erased = B.erased_card(B.ErasedCardData([12], "erased", at))
    assert erased.text == "Inquiry #12: erased" and len(erased.blocks) == 1
    redacted = B.erased_card(B.ErasedCardData([7, 8], "redacted", at, category="press"))
    assert "#7, #8" in redacted.blocks[0]["text"]["text"] and "retention" in redacted.blocks[0]["text"]["text"]
    assert "`press`" in json.dumps(redacted.blocks[1])


def test_forget_modal_escapes_and_fits():
    view = B.forget_modal(B.ForgetPreviewData(3, "a<b>@example.org", list(range(1, 60)), 120, 4, 2), "{}")
    text = view["blocks"][0]["text"]["text"]
    assert "a&lt;b&gt;@example.org" in text and "#30…" in text and "2 in other people's" in text
    assert len(view["title"]["text"]) <= B.MAX_MODAL_TITLE


# ---- through the outbox -----------------------------------------------------------------------


def test_the_cleanup_is_owed_with_the_erasure_and_nothing_owed_names_them(rt, fake_slack, cards):
    from intake.models import Delivery
    from tests.fakeslack import owed

    run.forget_person(rt, JANE, "cli:tester")
    with rt.db.session() as session:
        rows = list(session.scalars(select(Delivery)))
    cleanups = [d for d in rows if d.kind == "slack.erasure_cleanup"]
    assert {d.state for d in cleanups if not d.key.endswith(":again")} == {"done"}
    assert [d.state for d in cleanups if d.key.endswith(":again")] == ["pending", "pending"]
    assert all(d.inquiry_id is None for d in cleanups)
    assert not any(d.inquiry_id == cards["jane"] for d in rows)
    gone = {a.get("message_id") for a in owed(rt, "slack.message_line")}
    with rt.db.session() as session:
        from intake.models import Message

        assert gone <= set(session.scalars(select(Message.id)))  # no line owed for a message that went
    assert JANE not in json.dumps([d.args for d in rows]).lower()


def test_a_line_posted_late_is_deleted_by_the_second_pass(rt, fake_slack, cards):
    from intake.slack.client import slack_client
    from intake.slack.deliveries import LINE_METADATA
    from tests.fakeslack import run_delivery

    channel, ts = card_of(rt, cards["jane"])
    result = run.forget_person(rt, JANE, "cli:tester")
    # A line delivery that read her text just before the erasure posts it just after.
    late = slack_client(rt).chat_postMessage(
        channel=channel, thread_ts=ts, text=f"Follow-up: {PHRASE}",
        metadata={"event_type": LINE_METADATA, "event_payload": {"key": "line:message:999", "inquiry_id": cards["jane"]}},
    )["ts"]
    staff_reply = slack_client(rt).chat_postMessage(channel=channel, thread_ts=ts, text="noted")["ts"]
    again = f"erasure:{result.audit_event_id}:{channel}:{ts}:erased:again"
    assert run_delivery(rt, again) == "erased: -1 ~0"
    assert (channel, late) not in fake_slack.messages
    assert (channel, staff_reply) in fake_slack.messages  # not ours to judge: no intake metadata


def test_retention_redacts_old_cards_and_deletes_old_spam_cards(rt, fake_slack, cards):
    with rt.db.session() as session:
        inquiries.close(session, cards["jane"], STAFF)
        inquiries.mark_spam(session, cards["bob"], STAFF)
    jane_channel, jane_ts = card_of(rt, cards["jane"])
    bob_channel, bob_ts = card_of(rt, cards["bob"])
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=401)
    result = run.apply_retention(rt, later)
    assert result.as_json() == {"deleted": 1, "redacted": 1}
    card = fake_slack.messages[(jane_channel, jane_ts)]
    assert "removed by the retention policy" in json.dumps(card["blocks"])
    assert fake_slack.thread(jane_channel, jane_ts) == []
    assert (bob_channel, bob_ts) not in fake_slack.messages
    shown = everything_in_slack(fake_slack)
    assert PHRASE not in shown and JANE not in shown and BOB not in shown


def test_deleting_one_inquiry_of_a_folded_burst_keeps_the_card(fake_slack, db_url, tmp_path):
    config = tmp_path / "intake.toml"
    config.write_text("[slack]\npost_interval_seconds = 0\nburst_minutes = 10\n")
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    runtime = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    first = arrive(runtime, email(sender=f"{JANE_NAME} <{JANE}>", subject="Question one", body="About the stipend."))
    second = arrive(runtime, email(sender=f"{JANE_NAME} <{JANE}>", subject="Question two", body=f"About my {PHRASE}."))
    channel, ts = card_of(runtime, first.inquiry_id)
    assert card_of(runtime, second.inquiry_id) == (channel, ts)  # folded into one card
    assert PHRASE in json.dumps(fake_slack.thread(channel, ts))
    run.delete_inquiry(runtime, second.inquiry_id, "cli:tester")
    card = fake_slack.messages[(channel, ts)]
    assert "Question one" in card["text"] and "Question two" not in json.dumps(card["blocks"])
    assert PHRASE not in json.dumps(fake_slack.posted())
    runtime.db.dispose()
