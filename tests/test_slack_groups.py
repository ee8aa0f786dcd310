"""Groups and the search language in Slack, end to end: signed requests through Bolt and Flask,
the real WebClient against the fake Slack server, the real domain on both databases.

Group card (posted at card_size, linking the members' cards, never pinging anyone), members'
cards saying "in group G", Answer all (pre-filled modal, one queued reply per person, once),
Split, app mentions answered in a thread, /inquiries search and the App Home search box.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from sqlalchemy import select

from intake.grouping import store
from intake.models import Event, GroupMember, Inquiry, InquiryGroup, Message
from intake.slack import blocks as B
from intake.slack import group_blocks as G
from intake.slack.app import build_bolt_app, register_flask
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    button_payload,
    command_body,
    fake_slack,
    interactive_body,
    load_fixture,
    make_inquiry,
    owed,
    post_card,
    signed,
    slack_config,
    slack_rt,
    view_submission,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
OUTSIDER = "U999"
QUESTIONS = [
    ("Application deadline?", "When is the application deadline? I can't find the closing date. <!channel>"),
    ("Fecha límite", "¿Cuál es la fecha límite para postular? ¿Cuándo cierra la convocatoria?"),
    ("Date limite", "Bonjour, quelle est la date limite de candidature ?"),
]


@pytest.fixture
def web(slack_rt):
    flask_app = Flask("test")
    bolt = build_bolt_app(slack_rt, process_before_response=True)
    register_flask(flask_app, slack_rt, bolt_app=bolt)
    return flask_app.test_client()


def post_interactive(web, payload):
    return web.post("/slack/events", **signed(interactive_body(payload), FORM))


def post_event(web, body):
    return web.post("/slack/events", **signed(json.dumps(body), JSON))


def grouped(rt, fake, n=3, *, post_cards=True) -> tuple[int, list[int]]:
    ids = []
    for i, (subject, body) in enumerate(QUESTIONS[:n]):
        ids.append(make_inquiry(rt, subject=subject, body=body, sender=f"p{i}@example.org"))
        if post_cards:
            post_card(rt, ids[-1])
    store.refresh(rt)
    with rt.db.session() as session:
        group_id = session.scalar(select(GroupMember.group_id).where(GroupMember.inquiry_id == ids[0]))
    return group_id, ids


def group_card_message(rt, fake, group_id):
    with rt.db.session() as session:
        group = session.get(InquiryGroup, group_id)
        return fake.messages[(group.slack_channel, group.slack_ts)]


def test_group_card_is_posted_at_card_size_with_member_links_and_member_cards_say_so(slack_rt, fake_slack):
    group_id, ids = grouped(slack_rt, fake_slack, 2)
    with slack_rt.db.session() as session:
        assert session.get(InquiryGroup, group_id).slack_ts is None  # 2 people: no card yet
    third = make_inquiry(slack_rt, subject=QUESTIONS[2][0], body=QUESTIONS[2][1], sender="p2@example.org")
    post_card(slack_rt, third)
    store.refresh(slack_rt)
    card = group_card_message(slack_rt, fake_slack, group_id)
    blob = json.dumps(card["blocks"])
    assert card["blocks"][0]["text"]["text"].startswith("3 people ask:")
    assert "<!channel>" not in json.dumps(card)
    for inquiry_id in (*ids, third):
        with slack_rt.db.session() as session:
            row = session.get(Inquiry, inquiry_id)
        link = f"<https://fake.slack.com/archives/{row.slack_channel}/p{row.slack_ts.replace('.', '')}|#{inquiry_id}>"
        assert link in blob
        member_card = fake_slack.messages[(row.slack_channel, row.slack_ts)]
        assert f"in group {group_id}" in json.dumps(member_card["blocks"])
    answer_button = [e for b in card["blocks"] if b.get("type") == "actions" for e in b["elements"]]
    assert answer_button[0]["action_id"] == G.A_GROUP_ANSWER and answer_button[0]["value"] == str(group_id)
    # A second refresh with nothing new posts nothing more.
    before = len(fake_slack.calls_to("chat.postMessage"))
    store.refresh(slack_rt, force=True)
    assert len(fake_slack.calls_to("chat.postMessage")) == before


def test_answer_all_opens_a_prefilled_modal_and_queues_one_reply_per_person_once(web, slack_rt, fake_slack):
    group_id, ids = grouped(slack_rt, fake_slack)
    post_interactive(web, button_payload(G.A_GROUP_ANSWER, str(group_id), block_id=f"group_actions:{group_id}"))
    view = fake_slack.calls_to("views.open")[-1].params["view"]
    assert view["callback_id"] == G.V_GROUP_ANSWER and "3 people" in json.dumps(view)
    body_block = next(b for b in view["blocks"] if b.get("block_id") == "body")
    assert "Applications for the next fellowship cohort close" in body_block["element"]["initial_value"]

    submission = view_submission(G.V_GROUP_ANSWER, {"body": {"value": {"type": "plain_text_input",
                                 "value": "Applications close on 1 March."}}}, {"group_id": group_id})
    submission["view"]["id"] = "VANSWER1"
    response = post_interactive(web, submission)
    assert response.status_code == 200 and not response.data
    with slack_rt.db.session() as session:
        out = session.scalars(select(Message).where(Message.direction == "outbound")).all()
        assert sorted(m.inquiry_id for m in out) == sorted(ids)
        assert all(m.author == "U100" and m.kind == "reply" for m in out)
        assert len({m.to_address for m in out}) == 3
    assert sorted(a["message_id"] for a in owed(slack_rt, "email.send")) == sorted(m.id for m in out)
    # Delivered by the outbox (SMTP_URL unset: logged and marked sent): each person's own card
    # thread says the reply went out, and each inquiry now waits for its applicant.
    for inquiry_id in ids:
        with slack_rt.db.session() as session:
            row = session.get(Inquiry, inquiry_id)
        assert row.status == "waiting"
        assert any("sent the email reply" in m["text"] for m in fake_slack.thread(row.slack_channel, row.slack_ts))
    assert any("Answer queued for 3 people" in c.params.get("text", "") for c in fake_slack.calls_to("chat.postMessage"))
    with slack_rt.db.session() as session:
        assert session.get(InquiryGroup, group_id).answered_by == "U100"
    # The same submission again (a retry): nothing new is queued or sent.
    post_interactive(web, submission)
    with slack_rt.db.session() as session:
        assert len(session.scalars(select(Message).where(Message.direction == "outbound")).all()) == 3
    assert len(owed(slack_rt, "email.send")) == 3


def test_answer_all_refuses_outsiders_and_empty_text(web, slack_rt, fake_slack):
    group_id, _ = grouped(slack_rt, fake_slack)
    post_interactive(web, button_payload(G.A_GROUP_ANSWER, str(group_id), user=OUTSIDER))
    assert fake_slack.calls_to("views.open") == []
    empty = view_submission(G.V_GROUP_ANSWER, {"body": {"value": {"type": "plain_text_input", "value": " "}}},
                            {"group_id": group_id})
    assert post_interactive(web, empty).get_json()["errors"] == {"body": "Write the answer first."}
    outsider = view_submission(G.V_GROUP_ANSWER, {"body": {"value": {"type": "plain_text_input", "value": "x"}}},
                               {"group_id": group_id}, user=OUTSIDER)
    assert "Only members" in post_interactive(web, outsider).get_json()["errors"]["body"]
    gone = view_submission(G.V_GROUP_ANSWER, {"body": {"value": {"type": "plain_text_input", "value": "x"}}},
                           {"group_id": 9999})
    assert "no longer exists" in post_interactive(web, gone).get_json()["errors"]["body"]
    with slack_rt.db.session() as session:
        assert session.scalars(select(Message).where(Message.direction == "outbound")).all() == []


def test_split_from_the_group_card(web, slack_rt, fake_slack):
    group_id, ids = grouped(slack_rt, fake_slack)
    payload = button_payload(G.A_GROUP_MEMBER, "x")
    action = payload["actions"][0]
    del action["value"]
    action.update(type="overflow", selected_option={"value": f"split:{group_id}:{ids[1]}"})
    post_interactive(web, payload)
    with slack_rt.db.session() as session:
        assert session.get(GroupMember, ids[1]).split_by == "U100"
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.inquiry_id == ids[1]))]
        row = session.get(Inquiry, ids[1])
    assert "split_from_group" in kinds
    card = group_card_message(slack_rt, fake_slack, group_id)
    assert card["blocks"][0]["text"]["text"].startswith("2 people ask:")
    thread = [m["text"] for m in fake_slack.thread(row.slack_channel, row.slack_ts)]
    assert any(f"took it out of group {group_id}" in t for t in thread)
    store.refresh(slack_rt)
    with slack_rt.db.session() as session:
        assert ids[1] not in store.groups(session)[0].inquiries  # remembered


def test_app_mention_answers_in_a_thread(web, slack_rt, fake_slack):
    press = make_inquiry(slack_rt, subject="Podcast <!here>", body="an episode", sender="h@radio.example",
                         category="press")
    make_inquiry(slack_rt, subject="Apply", body="deadline", sender="x@example.org")

    def mention(text, user="U100", event_id="Ev1"):
        post_event(web, {"type": "event_callback", "event_id": event_id, "team_id": "T111",
                         "event": {"type": "app_mention", "user": user, "text": text, "channel": TRIAGE_CHANNEL,
                                   "ts": "1700000500.000100", "event_ts": "1700000500.000100"}})

    mention("<@UBOT> open press inquiries this week")
    reply = fake_slack.calls_to("chat.postMessage")[-1].params
    assert reply["thread_ts"] == "1700000500.000100"
    blob = json.dumps(reply["blocks"])
    assert f"#{press}*" in blob and "Apply" not in blob and "<!here>" not in blob
    mention("<@UBOT> category:pres", event_id="Ev2")
    error = fake_slack.calls_to("chat.postMessage")[-1].params["text"]
    assert "category:pres" in error and "unknown category" in error
    mention("<@UBOT> open", user=OUTSIDER, event_id="Ev3")
    assert "Only members" in fake_slack.calls_to("chat.postEphemeral")[-1].params["text"]


def test_slash_search_uses_the_language(web, slack_rt):
    press = make_inquiry(slack_rt, subject="Podcast", body="an episode", sender="h@radio.example", category="press")
    make_inquiry(slack_rt, subject="Apply", body="deadline", sender="x@example.org")

    def ask(text):
        body = {**load_fixture("slash_command.json"), "text": text, "user_id": "U100"}
        return json.dumps(web.post("/slack/events", **signed(command_body(body), FORM)).get_json())

    found = ask("search category:press from:@radio.example since:1d")
    assert f"#{press}*" in found and "Apply" not in found
    assert "unknown filter stauts:" in ask("search stauts:open")
    assert "Usage" in ask("search")


def test_app_home_search_box(web, slack_rt, fake_slack):
    press = make_inquiry(slack_rt, subject="Podcast", body="an episode", sender="h@radio.example", category="press")
    payload = button_payload(B.A_HOME_SEARCH, "x")
    action = payload["actions"][0]
    action.update(type="plain_text_input", value="category:press", block_id="home_search")
    payload["container"] = {"type": "view", "view_id": "VHOME"}
    post_interactive(web, payload)
    view = fake_slack.calls_to("views.publish")[-1].params["view"]
    box = next(b for b in view["blocks"] if b.get("block_id") == "home_search")
    assert box["element"]["initial_value"] == "category:press"
    results = json.dumps(view["blocks"][: view["blocks"].index(box) + 3])
    assert f"#{press}*" in results
    assert json.loads(view["private_metadata"]) == {"query": "category:press"}
    action["value"] = "since:7y"
    post_interactive(web, payload)
    assert "since:7y" in json.dumps(fake_slack.calls_to("views.publish")[-1].params["view"])


# ---- the pure builders --------------------------------------------------------------------------


def test_card_links_are_built_only_from_well_formed_parts():
    assert G.card_link("https://team.slack.com/", "C123", "1700000000.000100") == \
        "https://team.slack.com/archives/C123/p1700000000000100"
    assert G.card_link("https://evil.example/", "C123", "1700000000.000100") is None
    assert G.card_link("https://team.slack.com/", "C123|x>", "1700000000.000100") is None
    assert G.card_link("https://team.slack.com/", "C123", "1|<!channel>") is None
    assert G.card_link(None, "C123", "1700000000.000100") is None


def test_group_card_escapes_members_and_respects_limits():
    members = [G.GroupMemberRow(i, f"<!channel> {i}@x.org", "Subject <http://evil|bank>" * 20, None)
               for i in range(1, 60)]
    data = G.GroupCardData(7, "When is the deadline? <@U1> " * 20, "application", ("deadline",), members)
    message = G.group_card(data)
    blob = json.dumps(message.blocks)
    assert "<!channel>" not in blob and "<http://evil" not in blob and "<@U1>" not in json.dumps(
        [b for b in message.blocks if b["type"] != "header"])
    assert len(message.blocks) <= B.MAX_MESSAGE_BLOCKS and len(blob) <= B.MAX_MESSAGE_CHARS + 1000
    assert len(message.blocks[0]["text"]["text"]) <= B.MAX_HEADER_TEXT
    assert "59 people" in message.blocks[0]["text"]["text"]
    gone = G.group_card(G.GroupCardData(7, "label", "application", (), (), dissolved=True))
    assert "No one is waiting" in json.dumps(gone.blocks) and "actions" not in json.dumps(gone.blocks)
    modal = G.answer_all_modal(group_id=7, label="x" * 500, count=123, body="y" * 5000)
    assert len(modal["title"]["text"]) <= B.MAX_MODAL_TITLE
    assert json.loads(modal["private_metadata"]) == {"group_id": 7}
