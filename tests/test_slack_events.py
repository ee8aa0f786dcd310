"""/slack/events end to end: requests signed exactly as Slack signs them, dispatched by Bolt
through Flask, listeners calling the real domain, and the real WebClient talking to the fake
Slack server. Every card action, the refusal of non-members, modals, commands, shortcuts,
forwarded emails and Slack's event retries.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from intake import inquiries
from intake.models import Classification, Event, Inquiry, Message, SeenNonce
from intake.slack import blocks as B
from intake.slack.app import build_bolt_app, register_flask
from tests.conftest import slack_payload_dir
from tests.fakeslack import (  # noqa: F401  (fixtures)
    SIGNING_SECRET,
    TRIAGE_CHANNEL,
    button_payload,
    command_body,
    fake_slack,
    interactive_body,
    load_fixture,
    make_inquiry,
    owed,
    post_card,
    radio_value,
    select_payload,
    signed,
    slack_config,
    slack_rt,
    text_value,
    view_submission,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
OUTSIDER = "U999"  # not a member of the triage channel


@pytest.fixture
def web(slack_rt):
    """A Flask app with /slack/events mounted by register_flask; listeners finish before the
    response (process_before_response) so a test can assert right after the request."""
    flask_app = Flask("test")
    bolt = build_bolt_app(slack_rt, process_before_response=True)
    assert bolt is not None
    register_flask(flask_app, slack_rt, bolt_app=bolt)
    return flask_app.test_client()


def post_interactive(web, payload, **kw):
    return web.post("/slack/events", **signed(interactive_body(payload), FORM, **kw))


def post_command(web, text, user="U100", **fields):
    body = {**load_fixture("slash_command.json"), "text": text, "user_id": user, **fields}
    return web.post("/slack/events", **signed(command_body(body), FORM))


def post_event(web, body, **kw):
    return web.post("/slack/events", **signed(json.dumps(body), JSON, **kw))


def get_inquiry(rt, inquiry_id) -> Inquiry:
    with rt.db.session() as session:
        return session.get(Inquiry, inquiry_id)


def events_of(rt, inquiry_id) -> list[tuple[str, str]]:
    with rt.db.session() as session:
        return [(e.kind, e.actor) for e in session.scalars(
            select(Event).where(Event.inquiry_id == inquiry_id).order_by(Event.id))]


def posted_card(rt, fake, inquiry_id):
    """Post the card as the pipeline would, and return (channel, ts)."""
    post_card(rt, inquiry_id)
    row = get_inquiry(rt, inquiry_id)
    return row.slack_channel, row.slack_ts


def thread_texts(fake, channel, ts) -> list[str]:
    return [m["text"] for m in fake.thread(channel, ts)]


# ---- signatures and the unconfigured endpoint ------------------------------------------------


def test_bad_or_stale_signatures_are_refused(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    body = interactive_body(button_payload(B.A_CLAIM, str(inquiry_id)))
    assert web.post("/slack/events", **signed(body, FORM, secret="wrong")).status_code == 401
    stale = signed(body, FORM, timestamp=int(time.time()) - 600)
    assert web.post("/slack/events", **stale).status_code == 401
    assert get_inquiry(slack_rt, inquiry_id).assignee is None
    assert events_of(slack_rt, inquiry_id) == []


def test_url_verification(web):
    body = {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    response = post_event(web, body)
    assert response.status_code == 200
    assert response.get_json()["challenge"] == body["challenge"]


def test_without_credentials_the_endpoint_refuses(db_url):
    from intake.config import Settings
    from intake.jobs import InlineQueue
    from intake.runtime import Runtime

    rt = Runtime(Settings.from_env({"DATABASE_URL": db_url}), queue=InlineQueue())
    flask_app = Flask("t")
    assert register_flask(flask_app, rt) is None
    response = flask_app.test_client().post("/slack/events", **signed("payload=%7B%7D", FORM))
    assert response.status_code == 401 and "SLACK_BOT_TOKEN" in response.get_json()["error"]
    rt.db.dispose()


# ---- card actions ----------------------------------------------------------------------------


@pytest.mark.parametrize("action_id, status_before, expected_status, kind", [
    (B.A_CLAIM, "new", "open", "claimed"),
    (B.A_CLOSE, "open", "closed", "closed"),
    (B.A_REOPEN, "closed", "open", "reopened"),
    (B.A_SPAM, "new", "spam", "marked_spam"),
    (B.A_NOT_SPAM, "spam", "new", "marked_not_spam"),
])
def test_buttons_change_the_inquiry_update_the_card_and_log_in_the_thread(
        web, slack_rt, fake_slack, action_id, status_before, expected_status, kind):
    inquiry_id = make_inquiry(slack_rt, status="open" if status_before == "spam" else status_before)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    if status_before == "spam":
        with slack_rt.db.session() as session:
            inquiries.mark_spam(session, inquiry_id, "U200")
    response = post_interactive(web, button_payload(action_id, str(inquiry_id), message_ts=ts))
    assert response.status_code == 200
    row = get_inquiry(slack_rt, inquiry_id)
    assert row.status == expected_status
    assert events_of(slack_rt, inquiry_id)[-1] == (kind, "U100")
    update = fake_slack.calls_to("chat.update")[-1]
    assert update.params["ts"] == ts and update.params["parse"] == "none"
    assert thread_texts(fake_slack, channel, ts)[-1].startswith("<@U100> ")
    assert len(fake_slack.top_level(channel)) == 1


def test_assign_and_reclassify_menus(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt, category="general")
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    post_interactive(web, select_payload(B.A_ASSIGN, inquiry_id, {"selected_user": "U200"}))
    assert get_inquiry(slack_rt, inquiry_id).assignee == "U200"
    post_interactive(web, select_payload(B.A_RECLASSIFY, inquiry_id,
                                         {"selected_option": {"text": {"type": "plain_text", "text": "press"}, "value": "press"}}))
    row = get_inquiry(slack_rt, inquiry_id)
    assert row.category == "press"
    with slack_rt.db.session() as session:
        staff = session.scalars(select(Classification).where(Classification.source == "staff")).all()
        assert [(c.category, c.actor) for c in staff] == [("press", "U100")]  # trains the classifier
    lines = thread_texts(fake_slack, channel, ts)
    assert lines == ["<@U100> assigned it to <@U200>", "<@U100> reclassified it as `press`"]
    card = fake_slack.top_level(channel)[0]
    select_el = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                     if e["type"] == "static_select")
    assert select_el["initial_option"]["value"] == "press"


def test_unknown_category_is_refused(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt, category="general")
    post_interactive(web, select_payload(B.A_RECLASSIFY, inquiry_id, {"selected_option": {"value": "bogus"}}))
    assert get_inquiry(slack_rt, inquiry_id).category == "general"
    assert "not in the taxonomy" in fake_slack.calls_to("chat.postEphemeral")[0].params["text"]


def test_non_members_are_refused_and_nothing_changes(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    posted_card(slack_rt, fake_slack, inquiry_id)
    before = len(fake_slack.calls_to("chat.update"))
    for payload in (button_payload(B.A_CLAIM, str(inquiry_id), user=OUTSIDER),
                    button_payload(B.A_SPAM, str(inquiry_id), user=OUTSIDER),
                    select_payload(B.A_ASSIGN, inquiry_id, {"selected_user": OUTSIDER}, user=OUTSIDER),
                    button_payload(B.A_REPLY, str(inquiry_id), user=OUTSIDER)):
        assert post_interactive(web, payload).status_code == 200
    row = get_inquiry(slack_rt, inquiry_id)
    assert (row.status, row.assignee) == ("new", None)
    assert events_of(slack_rt, inquiry_id) == []
    assert len(fake_slack.calls_to("chat.update")) == before
    assert fake_slack.calls_to("views.open") == []
    refusals = fake_slack.calls_to("chat.postEphemeral")
    assert len(refusals) == 4 and all(c.params["user"] == OUTSIDER for c in refusals)
    assert "Only members of the triage channel" in refusals[0].params["text"]
    # A refused modal submission keeps the modal open with the reason.
    response = post_interactive(web, view_submission(
        B.V_NOTE, {"body": text_value("sneaky")}, {"inquiry_id": inquiry_id}, user=OUTSIDER))
    assert response.get_json()["response_action"] == "errors"
    assert events_of(slack_rt, inquiry_id) == []
    # Membership was asked of Slack once and cached.
    assert len(fake_slack.calls_to("conversations.members")) == 1


def test_every_listener_that_reads_or_changes_inquiries_is_members_only(slack_rt):
    """Authorization is one listener middleware (intake/slack/authz.py), given at registration:
    a listener added without it would show up here, not in production."""
    from slack_bolt.middleware.custom_middleware import CustomMiddleware

    app = build_bolt_app(slack_rt, process_before_response=True)
    public = {"on_file_share", "on_other_message", "on_reply_closed"}  # emails in, a modal closing
    # "Forget this person" answers only to the privacy admin group, a stricter check made in the
    # listener itself against that group (tests/test_privacy_slack.py refuses everyone else).
    admin_only = {"on_forget", "on_confirm"}
    guarded, unguarded = set(), set()
    for listener in app._listeners:
        names = {m.func.__name__ for m in listener.middleware if isinstance(m, CustomMiddleware)}
        (guarded if "members_only_middleware" in names else unguarded).add(listener.ack_function.__name__)
    assert unguarded == public | admin_only
    assert {"on_claim", "on_assign", "on_open_reply", "on_reply", "on_note", "on_inquiries",
            "on_log_message", "on_new", "on_home_opened", "on_refresh", "on_template"} <= guarded


def test_refused_template_menu_and_home_refresh_change_nothing(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt, subject="Hidden from outsiders")
    payload = button_payload(B.A_HOME_REFRESH, "refresh", block_id="home", user=OUTSIDER)
    payload["container"] = {"type": "view", "view_id": "VHOME"}
    assert post_interactive(web, payload).status_code == 200
    refused = json.dumps(fake_slack.calls_to("views.publish")[0].params["view"])
    assert "not a member" in refused and "Hidden from outsiders" not in refused
    template = select_payload(B.A_REPLY_TEMPLATE, inquiry_id, {"selected_option": {"value": "0"}}, user=OUTSIDER)
    template["view"] = {"id": "V1", "hash": "h", "private_metadata": json.dumps({"inquiry_id": inquiry_id})}
    assert post_interactive(web, template).status_code == 200
    assert fake_slack.calls_to("views.update") == []
    assert len(fake_slack.calls_to("conversations.members")) == 1


def test_usergroup_members_may_act(fake_slack, db_url, tmp_path):
    from intake.config import Settings
    from intake.db import Database
    from intake.runtime import Runtime
    from tests.fakeslack import RecordingQueue, slack_env, write_config

    config = write_config(tmp_path / "c.toml", {"allowed_usergroup": "S0DESK"})
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    rt = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    fake_slack.usergroups["S0DESK"] = ["U777"]
    flask_app = Flask("t")
    register_flask(flask_app, rt, bolt_app=build_bolt_app(rt, process_before_response=True))
    inquiry_id = make_inquiry(rt)
    posted_card(rt, fake_slack, inquiry_id)
    post_interactive(flask_app.test_client(), button_payload(B.A_CLAIM, str(inquiry_id), user="U777"))
    assert get_inquiry(rt, inquiry_id).assignee == "U777"
    rt.db.dispose()


# ---- modals: reply, note, full text, suggestions ---------------------------------------------


def test_reply_button_opens_the_modal_with_context_and_templates(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt, body="When is the deadline? <!channel>")
    posted_card(slack_rt, fake_slack, inquiry_id)
    post_interactive(web, button_payload(B.A_REPLY, str(inquiry_id)))
    call = fake_slack.calls_to("views.open")[0]
    assert call.params["trigger_id"] == "111.222.valid"
    view = call.params["view"]
    assert view["callback_id"] == B.V_REPLY
    blob = json.dumps(view)
    assert "When is the deadline? &lt;!channel&gt;" in blob
    templates = [b for b in view["blocks"] if b.get("block_id") == "template"]
    assert templates and templates[0]["elements"][0]["options"]  # saved replies offered
    # Picking a template fills the text (with the applicant's first name), keeping the modal.
    payload = button_payload(B.A_REPLY_TEMPLATE, "0")
    payload["actions"][0].update(type="static_select", selected_option={"value": "0"}, block_id="template")
    del payload["actions"][0]["value"]
    payload["container"] = {"type": "view", "view_id": "V0001"}
    payload["view"] = {**view, "id": "V0001", "hash": "h1", "state": {"values": {"mode": radio_value(B.REPLY_NOTE)}}}
    post_interactive(web, payload)
    update = fake_slack.calls_to("views.update")[-1]
    new_view = update.params["view"]
    body_block = next(b for b in new_view["blocks"] if b.get("block_id") == "body_1")
    assert "Hello Ann" in body_block["element"]["initial_value"]
    mode = next(b for b in new_view["blocks"] if b.get("block_id") == "mode")
    assert mode["element"]["initial_option"]["value"] == B.REPLY_NOTE


def test_reply_modal_send_queues_an_email(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    posted_card(slack_rt, fake_slack, inquiry_id)
    response = post_interactive(web, view_submission(
        B.V_REPLY, {"body_0": text_value("Dear Ann, the deadline is 1 March."), "mode": radio_value(B.REPLY_SEND)},
        {"inquiry_id": inquiry_id, "revision": 0}))
    assert response.status_code == 200 and not response.data  # modal closes
    with slack_rt.db.session() as session:
        out = session.scalars(select(Message).where(Message.direction == "outbound")).one()
        assert (out.kind, out.author, out.inquiry_id) == ("reply", "U100", inquiry_id)
        assert "the deadline is 1 March" in (out.text_body or out.raw.decode())
    assert {"message_id": out.id} in owed(slack_rt, "email.send")


def test_reply_modal_note_is_internal(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    post_interactive(web, view_submission(
        B.V_REPLY, {"body_0": text_value("She called <!here>"), "mode": radio_value(B.REPLY_NOTE)},
        {"inquiry_id": inquiry_id, "revision": 0}))
    with slack_rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "outbound")) == 0
        note = session.scalars(select(Message).where(Message.direction == "internal")).one()
        assert note.text_body == "She called <!here>"
    assert thread_texts(fake_slack, channel, ts) == ["<@U100> added a note"]
    assert "She called &lt;!here&gt;" in json.dumps(fake_slack.thread(channel, ts)[0]["blocks"])


def test_reply_modal_validation_keeps_the_modal_open(web, slack_rt):
    inquiry_id = make_inquiry(slack_rt)
    response = post_interactive(web, view_submission(
        B.V_REPLY, {"body_0": text_value("   "), "mode": radio_value(B.REPLY_SEND)}, {"inquiry_id": inquiry_id}))
    assert response.get_json() == {"response_action": "errors", "errors": {"body_0": "Write the message first."}}


def test_note_button_and_modal(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    post_interactive(web, button_payload(B.A_NOTE, str(inquiry_id)))
    assert fake_slack.calls_to("views.open")[0].params["view"]["callback_id"] == B.V_NOTE
    post_interactive(web, view_submission(B.V_NOTE, {"body": text_value("Left a voicemail")}, {"inquiry_id": inquiry_id}))
    assert events_of(slack_rt, inquiry_id)[-1] == ("note", "U100")
    assert thread_texts(fake_slack, channel, ts) == ["<@U100> added a note"]


def test_full_text_button(web, slack_rt, fake_slack):
    body = "Dear team,\n" + ("A long paragraph & more. " * 300)
    inquiry_id = make_inquiry(slack_rt, body=body)
    with slack_rt.db.session() as session:  # the card shows the latest reply; the modal all of it
        session.scalars(select(Message)).one().latest_reply = "Dear team,"
    post_interactive(web, button_payload(B.A_FULL_TEXT, str(inquiry_id)))
    view = fake_slack.calls_to("views.open")[0].params["view"]
    sections = "".join(b["text"]["text"] for b in view["blocks"][2:] if b["type"] == "section")
    assert sections == body.strip().replace("&", "&amp;")


def test_suggestion_send_and_edit(web, slack_rt, fake_slack):
    from intake import outbound

    text = "Hello, when is the application deadline for the fellowship this year?"
    suggestion = outbound.suggest_answer(slack_rt.settings, text, "application")
    assert suggestion is not None, "the default knowledge base answers the deadline question"
    inquiry_id = make_inquiry(slack_rt, body=text)
    posted_card(slack_rt, fake_slack, inquiry_id)
    post_interactive(web, button_payload(B.A_SUGGEST_EDIT, str(inquiry_id), block_id=f"card_suggest:{inquiry_id}"))
    view = fake_slack.calls_to("views.open")[0].params["view"]
    body_block = next(b for b in view["blocks"] if b.get("block_id") == "body_0")
    assert body_block["element"]["initial_value"].startswith(suggestion.answer[:50])
    post_interactive(web, button_payload(B.A_SUGGEST_SEND, str(inquiry_id), block_id=f"card_suggest:{inquiry_id}"))
    with slack_rt.db.session() as session:
        out = session.scalars(select(Message).where(Message.direction == "outbound")).one()
        assert out.author == "U100"
        out_id = out.id
    assert owed(slack_rt, "email.send") == [{"message_id": out_id}]


def test_folded_menu_acts_on_the_folded_inquiry(web, slack_rt, fake_slack):
    first = make_inquiry(slack_rt, sender="burst@example.org")
    second = make_inquiry(slack_rt, sender="burst@example.org", subject="again")
    channel, ts = posted_card(slack_rt, fake_slack, first)
    posted_card(slack_rt, fake_slack, second)
    payload = button_payload(B.A_FOLDED, str(first))
    payload["actions"][0].update(type="overflow", selected_option={"value": f"claim:{second}"})
    del payload["actions"][0]["value"]
    post_interactive(web, payload)
    assert get_inquiry(slack_rt, second).assignee == "U100"
    assert get_inquiry(slack_rt, first).assignee is None
    assert thread_texts(fake_slack, channel, ts)[-1] == f"#{second} · <@U100> claimed it"


# ---- digest review ----------------------------------------------------------------------------


def test_digest_review_restores_a_false_positive(web, slack_rt, fake_slack):
    from intake.jobs import run_job

    spam = make_inquiry(slack_rt, subject="Not actually spam", category="spam", status="spam", sender="real@example.org")
    make_inquiry(slack_rt, subject="<!channel> prize", category="spam", status="spam", sender="junk@spam.example")
    run_job(slack_rt, "slack.digest")
    digest = fake_slack.top_level(TRIAGE_CHANNEL)[0]
    button = next(e for b in digest["blocks"] if b["type"] == "actions" for e in b["elements"])
    post_interactive(web, button_payload(B.A_DIGEST_REVIEW, button["value"], block_id="digest"))
    view = fake_slack.calls_to("views.open")[0].params["view"]
    assert view["callback_id"] == B.V_DIGEST
    restore_values = [b["accessory"]["value"] for b in view["blocks"] if b.get("accessory")]
    assert str(spam) in restore_values and len(restore_values) == 2
    payload = button_payload(B.A_DIGEST_RESTORE, str(spam), block_id=f"restore:{spam}")
    payload["container"] = {"type": "view", "view_id": "V0001"}
    payload["view"] = {**view, "id": "V0001", "hash": "h"}
    post_interactive(web, payload)
    row = get_inquiry(slack_rt, spam)
    assert row.status == "new" and row.slack_ts is not None  # its card is now posted
    cards = [m for m in fake_slack.top_level(TRIAGE_CHANNEL) if m["text"].startswith(f"Inquiry #{spam}")]
    assert len(cards) == 1
    assert thread_texts(fake_slack, TRIAGE_CHANNEL, row.slack_ts)[-1].startswith("<@U100> restored it")
    updated = fake_slack.calls_to("views.update")[-1].params["view"]
    assert [b["accessory"]["value"] for b in updated["blocks"] if b.get("accessory")] != restore_values
    assert str(spam) not in [b["accessory"]["value"] for b in updated["blocks"] if b.get("accessory")]


# ---- /inquiries -------------------------------------------------------------------------------


def test_slash_command_lists_search_show_and_stats(web, slack_rt):
    a = make_inquiry(slack_rt, subject="Visa question <!channel>", sender="v@example.org")
    b = make_inquiry(slack_rt, subject="Partnership with the city", sender="mayor@city.example", category="partnership")
    with slack_rt.db.session() as session:
        inquiries.claim(session, b, "U100")

    def blob(text):
        response = post_command(web, text)
        assert response.status_code == 200
        return json.dumps(response.get_json())

    opened = blob("open")
    assert f"#{a}*" in opened and f"#{b}*" in opened and "<!channel>" not in opened
    assert "ephemeral" in opened
    mine = blob("mine")
    assert f"#{b}*" in mine and f"#{a}*" not in mine
    unassigned = blob("unassigned")
    assert f"#{a}*" in unassigned and f"#{b}*" not in unassigned
    found = blob("search city partnership")
    assert f"#{b}*" in found and f"#{a}*" not in found
    assert "No inquiry matches" in blob("search zzzz")
    shown = blob(f"show {a}")
    header = json.loads(shown)["blocks"][0]
    assert header["text"] == {"type": "plain_text", "text": f"#{a} Visa question <!channel>", "emoji": False}
    assert "v@example.org" in shown and "What is the deadline?" in shown
    assert "Usage" in blob("show 99999")
    stats = blob("stats")
    assert "By status" in stats and "partnership" in stats
    assert "search" in blob("help")


def test_slash_command_refuses_outsiders(web, slack_rt):
    make_inquiry(slack_rt, subject="secret")
    response = post_command(web, "open", user=OUTSIDER)
    assert "Only members" in response.get_json()["text"] and "secret" not in response.get_data(as_text=True)


def test_slash_new_opens_a_modal_and_logs_a_phone_inquiry(web, slack_rt, fake_slack):
    post_command(web, "new")
    view = fake_slack.calls_to("views.open")[0].params["view"]
    assert view["callback_id"] == B.V_NEW
    bad = post_interactive(web, view_submission(B.V_NEW, {
        "sender_address": text_value("not an address\r\nBcc: x@y.z"), "sender_name": text_value("Bo"),
        "subject": text_value(""), "body": text_value("Called about stipend")}, {}))
    assert set(bad.get_json()["errors"]) == {"sender_address", "subject"}
    ok = post_interactive(web, view_submission(B.V_NEW, {
        "sender_address": text_value("bo@example.org"), "sender_name": text_value("Bo\r\nBcc: evil@x.y"),
        "subject": text_value("Stipend\r\nX-Injected: 1"), "body": text_value("Called about the stipend")}, {}))
    assert ok.status_code == 200
    with slack_rt.db.session() as session:
        stored = session.scalars(select(Message)).one()
        assert (stored.source, stored.provider, stored.meta["slack_user"]) == ("manual", "slack", "U100")
        raw = stored.raw.decode()
        assert "\nX-Injected" not in raw and "\nBcc" not in raw
        assert "bo@example.org" in raw and "Called about the stipend" in raw
    assert ("pipeline.process_message", (stored.id,)) in slack_rt.queue.enqueued


# ---- shortcuts --------------------------------------------------------------------------------


def test_log_as_inquiry_message_shortcut(web, slack_rt, fake_slack):
    fake_slack.users["U200"] = {"real_name": "Carla City", "email": "carla@city.example"}
    shortcut = load_fixture("shortcut_message.json")
    post_interactive(web, shortcut)
    opened = fake_slack.calls_to("views.open")[0].params["view"]
    assert opened["callback_id"] == B.V_LOG_MESSAGE
    updated = fake_slack.calls_to("views.update")[0].params["view"]
    address = next(b for b in updated["blocks"] if b["block_id"] == "sender_address")
    assert address["element"]["initial_value"] == "carla@city.example"
    meta = json.loads(updated["private_metadata"])
    values = {"sender_address": text_value("carla@city.example"), "sender_name": text_value("Carla City"),
              "subject": text_value("Hosting fellows"), "body": text_value(shortcut["message"]["text"])}
    post_interactive(web, view_submission(B.V_LOG_MESSAGE, values, meta))
    # Logged twice by mistake, a few seconds later: the same bytes, so the same message.
    with time_machine.travel(time.time() + 3, tick=False):
        post_interactive(web, view_submission(B.V_LOG_MESSAGE, values, meta))
    with slack_rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id))) == 1
        stored = session.scalars(select(Message)).one()
        assert stored.source == "slack" and stored.meta["channel"] == "C222"
    assert slack_rt.queue.names().count("pipeline.process_message") == 1


def test_shortcuts_refuse_outsiders(web, slack_rt, fake_slack):
    shortcut = load_fixture("shortcut_message.json")
    shortcut["user"]["id"] = OUTSIDER
    post_interactive(web, shortcut)
    view = fake_slack.calls_to("views.open")[0].params["view"]
    assert view["title"]["text"] == "Not allowed"


# ---- events: forwarded email, retries, App Home -----------------------------------------------


def test_forwarded_email_becomes_an_inquiry_and_retries_are_ignored(web, slack_rt, fake_slack):
    body = load_fixture("event_file_share_email.json")
    assert post_event(web, body).status_code == 200
    assert post_event(web, body, retry_num=1).status_code == 200
    assert post_event(web, body, retry_num=2).status_code == 200
    with slack_rt.db.session() as session:
        stored = session.scalars(select(Message)).one()
        raw = stored.raw.decode("utf-8")
        assert stored.provider == "slack" and stored.meta["slack_file"] == "F0EMAIL1"
        assert stored.message_id == "CAF-forwarded-123@mail.example.org"
        assert "maria.lopez@example.org" in raw.lower() and "application deadline" in raw
        assert session.scalar(select(func.count(SeenNonce.id)).where(SeenNonce.kind == "slack_event")) == 1
    assert slack_rt.queue.names().count("pipeline.process_message") == 1


def test_forwarded_email_with_a_new_event_id_is_still_one_message(web, slack_rt):
    body = load_fixture("event_file_share_email.json")
    post_event(web, body)
    body["event_id"] = "Ev0EMAIL2"  # Slack redelivered under another id
    post_event(web, body)
    with slack_rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id))) == 1  # same Message-ID: a duplicate


def test_forwarded_email_outside_the_email_channel_is_ignored(web, slack_rt):
    body = load_fixture("event_file_share_email.json")
    body["event"]["channel"] = "CRANDOM"
    post_event(web, body)
    with slack_rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id))) == 0


def test_forwarded_email_without_text_is_fetched_with_files_info(web, slack_rt, fake_slack):
    body = load_fixture("event_file_share_email.json")
    full = dict(body["event"]["files"][0])
    fake_slack.files[full["id"]] = full
    body["event"]["files"][0] = {"id": full["id"], "filetype": "email", "file_access": "check_file_info"}
    post_event(web, body)
    assert fake_slack.calls_to("files.info")[0].params["file"] == "F0EMAIL1"
    with slack_rt.db.session() as session:
        assert "application deadline" in session.scalars(select(Message)).one().raw.decode()


def test_app_home_shows_my_inquiries_and_the_queue(web, slack_rt, fake_slack):
    mine = make_inquiry(slack_rt, subject="Mine <!here>")
    queued = make_inquiry(slack_rt, subject="Queued", sender="q@example.org")
    with slack_rt.db.session() as session:
        inquiries.assign(session, mine, "U100", "U100")
    event = {"type": "event_callback", "event_id": "EvHOME1", "team_id": "T111", "api_app_id": "A111",
             "event": {"type": "app_home_opened", "user": "U100", "channel": "D1", "tab": "home",
                       "event_ts": "1700000000.1"}}
    post_event(web, event)
    call = fake_slack.calls_to("views.publish")[0]
    assert call.params["user_id"] == "U100"
    blob = json.dumps(call.params["view"])
    assert f"#{mine}*" in blob and f"#{queued}*" in blob and "Mine &lt;!here&gt;" in blob
    assert "Open by category" in blob
    event["event_id"] = "EvHOME2"
    event["event"]["user"] = OUTSIDER
    post_event(web, event)
    refused = json.dumps(fake_slack.calls_to("views.publish")[1].params["view"])
    assert "not a member" in refused and "Queued" not in refused


# ---- the real create_app route, acknowledging before the work ---------------------------------


def test_create_app_mounts_bolt_and_acks_before_the_work(slack_rt, fake_slack):
    from intake.app import create_app

    client = create_app(rt=slack_rt).test_client()
    inquiry_id = make_inquiry(slack_rt)
    posted_card(slack_rt, fake_slack, inquiry_id)
    response = client.post("/slack/events", **signed(interactive_body(button_payload(B.A_CLAIM, str(inquiry_id))), FORM))
    assert response.status_code == 200
    fake_slack.wait_for("chat.update", 1, timeout=10)  # the listener went on after the ack
    fake_slack.wait_for("chat.postMessage", 2, timeout=10)  # card, then the thread line
    deadline = time.monotonic() + 5
    while get_inquiry(slack_rt, inquiry_id).assignee is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get_inquiry(slack_rt, inquiry_id).assignee == "U100"


# ---- the shared upstream payload samples (skipped in a clone without ../shared) ---------------


def test_shared_sample_payloads_reach_our_listeners(web, slack_rt, fake_slack):
    samples = slack_payload_dir()
    inquiry_id = make_inquiry(slack_rt)
    posted_card(slack_rt, fake_slack, inquiry_id)
    fake_slack.default_members.append("W111")
    actions = json.loads((samples / "block_actions.json").read_text())
    actions["actions"][0].update(action_id=B.A_CLAIM, value=str(inquiry_id))
    actions["response_url"] = fake_slack.response_url
    assert post_interactive(web, actions).status_code == 200
    assert get_inquiry(slack_rt, inquiry_id).assignee == "W111"
    command = json.loads((samples / "slash_command.json").read_text())
    command.update(command="/inquiries", text="open", response_url=fake_slack.response_url)
    response = web.post("/slack/events", **signed(command_body(command), FORM))
    assert f"#{inquiry_id}*" in json.dumps(response.get_json())
    submission = json.loads((samples / "view_submission.json").read_text())
    submission["view"].update(callback_id=B.V_NOTE, private_metadata=json.dumps({"inquiry_id": inquiry_id}),
                              state={"values": {"body": {"v": {"type": "plain_text_input", "value": "from sample"}}}})
    assert post_interactive(web, submission).status_code == 200
    assert events_of(slack_rt, inquiry_id)[-1] == ("note", "W111")
    home = json.loads((samples / "event_app_home_opened.json").read_text())
    home["event"]["user"] = "W111"
    assert post_event(web, home).status_code == 200
    assert fake_slack.calls_to("views.publish")
    verification = json.loads((samples / "event_url_verification.json").read_text())
    assert post_event(web, verification).get_json()["challenge"] == verification["challenge"]


def test_global_shortcut_and_home_refresh(web, slack_rt, fake_slack):
    shortcut = {"type": "shortcut", "token": "t", "action_ts": "1.1", "team": {"id": "T111", "domain": "d"},
                "user": {"id": "U100", "username": "ana", "team_id": "T111"}, "callback_id": "new_inquiry",
                "trigger_id": "111.111.xxxxxx"}
    post_interactive(web, shortcut)
    assert fake_slack.calls_to("views.open")[0].params["view"]["callback_id"] == B.V_NEW
    payload = button_payload(B.A_HOME_REFRESH, "refresh", block_id="home")
    payload["container"] = {"type": "view", "view_id": "VHOME"}
    make_inquiry(slack_rt, subject="Fresh one")
    post_interactive(web, payload)
    assert "Fresh one" in json.dumps(fake_slack.calls_to("views.publish")[0].params["view"])


def test_forwarded_email_end_to_end_card_then_follow_up_in_thread(fake_slack, db_url, slack_config):
    """Through the real pipeline (parse, thread, classify): a forwarded email gets a card, and
    the applicant's follow-up lands in that card's thread."""
    from intake.config import Settings
    from intake.db import Database
    from intake.runtime import Runtime
    from tests.fakeslack import RecordingQueue, slack_env

    settings = Settings.from_env(slack_env(fake_slack, db_url, slack_config))
    rt = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue(("outbox.", "pipeline.")))
    flask_app = Flask("t")
    register_flask(flask_app, rt, bolt_app=build_bolt_app(rt, process_before_response=True))
    client = flask_app.test_client()
    first = load_fixture("event_file_share_email.json")
    assert post_event(client, first).status_code == 200
    cards = fake_slack.top_level(TRIAGE_CHANNEL)
    assert len(cards) == 1
    texts = json.dumps(cards[0]["blocks"])
    assert "<!channel>" not in cards[0]["text"] and "application deadline" in texts
    assert "<http://evil.example|bank.com>" not in texts
    follow = load_fixture("event_file_share_email.json")
    follow["event_id"] = "Ev0EMAIL9"
    file = follow["event"]["files"][0]
    file.update(id="F0EMAIL9", subject="Re: How do I apply?", plain_text="Also: is there a stipend?")
    file["headers"] = {**file["headers"], "message_id": "<CAF-followup-9@mail.example.org>",
                       "in_reply_to": "<CAF-forwarded-123@mail.example.org>"}
    post_event(client, follow)
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    thread = fake_slack.thread(TRIAGE_CHANNEL, cards[0]["ts"])
    assert any("is there a stipend?" in json.dumps(m["blocks"]) for m in thread)
    rt.db.dispose()


def test_forwarded_email_with_odd_fields_is_still_stored(web, slack_rt):
    body = load_fixture("event_file_share_email.json")
    file = body["event"]["files"][0]
    file["headers"] = {"date": ["not", "a", "date"], "reply_to": [{"address": "x@y.z"}],
                       "in_reply_to": 12, "message_id": None}
    file["from"] = [{"address": "not an address"}, {"address": "real@example.org", "name": "Real\r\nBcc: x@y.z"}]
    assert post_event(web, body).status_code == 200
    with slack_rt.db.session() as session:
        stored = session.scalars(select(Message)).one()
        raw = stored.raw.decode()
        assert "real@example.org" in raw and "\nBcc:" not in raw
        assert "slack-file.F0EMAIL1@intake.invalid" in raw  # a stable Message-ID for redeliveries


def test_a_reply_that_cannot_be_sent_keeps_the_modal_open(web, slack_rt):
    inquiry_id = make_inquiry(slack_rt, sender="no-address-here")
    response = post_interactive(web, view_submission(
        B.V_REPLY, {"body_0": text_value("Hello"), "mode": radio_value(B.REPLY_SEND)},
        {"inquiry_id": inquiry_id, "revision": 0}))
    answer = response.get_json()
    assert answer["response_action"] == "errors" and "no valid address" in answer["errors"]["mode"]
    with slack_rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "outbound")) == 0
    assert owed(slack_rt, "email.send") == []


# ---- idempotent staff actions ----------------------------------------------------------------


def _card_button_value(fake_slack, channel, action_id):
    card = fake_slack.top_level(channel)[0]
    return next(e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e.get("action_id") == action_id)


def test_a_double_click_acts_once(web, slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    value = _card_button_value(fake_slack, channel, B.A_CLOSE)
    assert value == f"{inquiry_id}:0"  # the button carries the card's version
    for _ in range(2):  # the same drawing of the card, clicked twice
        assert post_interactive(web, button_payload(B.A_CLOSE, value, message_ts=ts)).status_code == 200
    assert [k for k, _ in events_of(slack_rt, inquiry_id)] == ["closed"]
    assert thread_texts(fake_slack, channel, ts) == ["<@U100> closed it"]
    refusal = fake_slack.calls_to("chat.postEphemeral")[-1].params["text"]
    assert "changed since that card was drawn" in refusal
    # The updated card carries the new version, and a click on it acts.
    assert _card_button_value(fake_slack, channel, B.A_REOPEN) == f"{inquiry_id}:1"


def test_two_people_claiming_at_once_claim_once(web, slack_rt, fake_slack):
    import threading

    inquiry_id = make_inquiry(slack_rt)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    value = _card_button_value(fake_slack, channel, B.A_CLAIM)
    results = []

    def click(user):
        results.append(post_interactive(web, button_payload(B.A_CLAIM, value, user=user, message_ts=ts)).status_code)

    threads = [threading.Thread(target=click, args=(user,)) for user in ("U100", "U200")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    claims = [e for e in events_of(slack_rt, inquiry_id) if e[0] == "claimed"]
    assert len(claims) == 1
    assert get_inquiry(slack_rt, inquiry_id).assignee == claims[0][1]


def test_send_suggested_answer_clicked_twice_sends_one_reply(web, slack_rt, fake_slack):
    from intake import outbound

    text = "Hello, when is the application deadline for the fellowship this year?"
    if outbound.suggest_answer(slack_rt.settings, text, "application") is None:
        pytest.skip("the default knowledge base has no match")
    inquiry_id = make_inquiry(slack_rt, body=text)
    channel, ts = posted_card(slack_rt, fake_slack, inquiry_id)
    value = _card_button_value(fake_slack, channel, B.A_SUGGEST_SEND)
    for user in ("U100", "U200"):  # a double click, or two people on the same card
        post_interactive(web, button_payload(B.A_SUGGEST_SEND, value, user=user, message_ts=ts,
                                             block_id=f"card_suggest:{inquiry_id}"))
    with slack_rt.db.session() as session:
        replies = session.scalars(select(Message).where(Message.direction == "outbound",
                                                        Message.kind == "reply")).all()
        assert len(replies) == 1 and replies[0].author == "U100"
    assert len(owed(slack_rt, "email.send")) == 1
