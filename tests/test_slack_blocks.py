"""Block Kit builders as pure functions: layout, escaping of hostile text, and Slack's limits."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from intake.slack import blocks as B
from intake.slack.escaping import cut_escaped, escape, escape_trim, user_mention

HOSTILE = "<!channel> hi <@U123> see <http://evil.example|bank.com> & <!here> <!subteam^S1>"
CATEGORIES = ["application", "press", "general", "spam", "automated"]


def all_mrkdwn(obj) -> list[str]:
    """Every mrkdwn string anywhere in a block structure."""
    found: list[str] = []
    if isinstance(obj, dict):
        if obj.get("type") == "mrkdwn":
            found.append(obj["text"])
        for value in obj.values():
            found += all_mrkdwn(value)
    elif isinstance(obj, list):
        for value in obj:
            found += all_mrkdwn(value)
    return found


def all_of_type(obj, type_name: str) -> list[dict]:
    found = []
    if isinstance(obj, dict):
        if obj.get("type") == type_name:
            found.append(obj)
        for value in obj.values():
            found += all_of_type(value, type_name)
    elif isinstance(obj, list):
        for value in obj:
            found += all_of_type(value, type_name)
    return found


def assert_inert(texts: list[str]) -> None:
    """No untrusted special token survives: no <!channel>, no <@U123>, no lying link."""
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<!here>" not in joined and "<!subteam" not in joined
    assert "<@U123>" not in joined
    assert "<http://evil.example|bank.com>" not in joined
    assert "&lt;!channel&gt;" in joined


def card(**over) -> B.CardData:
    base = dict(
        inquiry_id=42, subject="How do I apply?", sender_name="Ann", sender_address="ann@example.org",
        status="new", category="application", confidence=0.87, reasons=("model",), language="en",
        received_at=dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.timezone.utc), latest_reply="When is the deadline?",
    )
    base.update(over)
    return B.CardData(**base)


def test_escape_only_three_characters():
    assert escape("a & b < c > d *bold* _it_ `code`") == "a &amp; b &lt; c &gt; d *bold* _it_ `code`"
    assert escape(None) == ""


def test_trimming_never_splits_an_entity():
    text = "x" * 8 + "&"  # escapes to 8 x + "&amp;"
    cut = cut_escaped(escape(text), 11)
    assert not cut.rstrip("…").endswith("&am") and "&" not in cut.rstrip("…")[-4:]
    assert len(escape_trim("<" * 100, 50)) <= 50


def test_user_mention_only_for_well_formed_ids():
    assert user_mention("U0123ABC") == "<@U0123ABC>"
    assert user_mention("W111") == "<@W111>"
    assert user_mention("!channel") == "!channel"
    assert user_mention("<!channel>") == "&lt;!channel&gt;"


def test_card_shows_the_facts_and_every_action():
    message = B.triage_card(card(), CATEGORIES)
    blob = json.dumps(message.blocks)
    assert message.blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "How do I apply?", "emoji": False}}
    texts = "\n".join(all_mrkdwn(message.blocks))
    for fact in ("Ann (ann@example.org)", "example.org", "`application` 87%", "new", "_unassigned_",
                 "When is the deadline?", "Inquiry #42", "*Language*\nen", "<!date^"):
        assert fact in texts, fact
    action_ids = {e["action_id"] for e in all_of_type(message.blocks, "button")}
    assert {B.A_CLAIM, B.A_REPLY, B.A_NOTE, B.A_CLOSE, B.A_SPAM, B.A_FULL_TEXT} <= action_ids
    assert B.A_REOPEN not in action_ids and B.A_NOT_SPAM not in action_ids
    assert all_of_type(message.blocks, "users_select")[0]["action_id"] == B.A_ASSIGN
    select = all_of_type(message.blocks, "static_select")[0]
    assert select["initial_option"]["value"] == "application"
    assert [o["value"] for o in select["options"]] == CATEGORIES
    assert "card_menus:42" in blob


def test_card_buttons_follow_the_status():
    closed = {e["action_id"] for e in all_of_type(B.triage_card(card(status="closed"), CATEGORIES).blocks, "button")}
    assert B.A_REOPEN in closed and B.A_CLOSE not in closed
    spam = {e["action_id"] for e in all_of_type(B.triage_card(card(status="spam"), CATEGORIES).blocks, "button")}
    assert B.A_NOT_SPAM in spam and B.A_SPAM not in spam and B.A_CLOSE not in spam
    assigned = B.triage_card(card(assignee="U100"), CATEGORIES)
    assert B.A_CLAIM not in {e["action_id"] for e in all_of_type(assigned.blocks, "button")}
    assert all_of_type(assigned.blocks, "users_select")[0]["initial_user"] == "U100"
    assert "<@U100>" in "\n".join(all_mrkdwn(assigned.blocks))


def test_card_escapes_hostile_subject_body_and_sender():
    message = B.triage_card(card(subject=HOSTILE, latest_reply=HOSTILE, sender_name=HOSTILE,
                                 reasons=(HOSTILE,), sender_address="x@evil.example"), CATEGORIES)
    assert_inert(all_mrkdwn(message.blocks) + [message.text])
    # plain_text is never parsed by Slack: the header shows the subject as typed.
    assert message.blocks[0]["text"]["type"] == "plain_text"


def test_card_respects_block_kit_limits_with_huge_inputs():
    folded = [B.FoldedItem(i, "s" * 500, "new") for i in range(100, 160)]
    message = B.triage_card(card(subject="S" * 1000, latest_reply="<&>" * 20000, sender_name="N" * 900,
                                 reasons=tuple("r" * 400 for _ in range(20)), folded=folded,
                                 suggestion=B.SuggestionData("t" * 500, "a" * 9000, 0.9)), CATEGORIES)
    assert len(message.blocks) <= B.MAX_MESSAGE_BLOCKS
    assert len(json.dumps(message.blocks, ensure_ascii=False)) <= 13000
    assert len(message.blocks[0]["text"]["text"]) <= B.MAX_HEADER_TEXT
    for block in message.blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= B.MAX_SECTION_TEXT
        for field in block.get("fields", []):
            assert len(field["text"]) <= B.MAX_FIELD_TEXT
    for element in all_of_type(message.blocks, "button"):
        assert len(element["text"]["text"]) <= B.MAX_BUTTON_TEXT
    assert any("Full text" in e["text"]["text"] for e in all_of_type(message.blocks, "button"))
    assert "Trimmed" in json.dumps(message.blocks)


def test_fit_message_caps_blocks_and_total_size():
    blocks = [B.section("x" * 2900) for _ in range(80)] + [{"type": "actions", "elements": []}]
    fitted = B.fit_message(blocks)
    assert len(fitted) <= 50
    assert fitted[-1]["type"] == "actions"
    assert len(json.dumps(fitted)) <= B.MAX_MESSAGE_CHARS


def test_suggestion_has_send_and_edit_buttons():
    message = B.triage_card(card(suggestion=B.SuggestionData("Deadline", "The deadline is 1 March <!channel>", 0.8)), CATEGORIES)
    ids = {e["action_id"] for e in all_of_type(message.blocks, "button")}
    assert {B.A_SUGGEST_SEND, B.A_SUGGEST_EDIT} <= ids
    send = next(e for e in all_of_type(message.blocks, "button") if e["action_id"] == B.A_SUGGEST_SEND)
    assert "confirm" in send  # nothing is sent on a single stray click
    assert_inert(all_mrkdwn(message.blocks))


def test_folded_burst_lists_each_inquiry_with_its_own_menu():
    message = B.triage_card(card(folded=[B.FoldedItem(43, "<!here> second", "new"), B.FoldedItem(44, "third", "new")]), CATEGORIES)
    overflows = all_of_type(message.blocks, "overflow")
    assert [o["options"][0]["value"] for o in overflows] == ["claim:43", "claim:44"]
    assert "2 more from this sender" in json.dumps(message.blocks)
    assert "<!here>" not in "\n".join(all_mrkdwn(message.blocks))


def test_event_lines_escape_staff_text_and_name_the_actor():
    line = B.event_line("note", "U100", {"message_id": 3}, 7, text=HOSTILE)
    assert line.text == "<@U100> added a note"
    assert_inert(all_mrkdwn(line.blocks))
    assert B.event_line("assigned", "U100", {"assignee": "U200"}, 7).text == "<@U100> assigned it to <@U200>"
    assert B.event_line("reclassified", "U1X", {"category": "press"}, 7, show_id=True).text == \
        "#7 · <@U1X> reclassified it as `press`"
    hostile = B.event_line("send_failed", "system", {"to": "<!channel>", "error": "<@U123>"}, 7)
    assert "<!channel>" not in hostile.text and "<@U123>" not in hostile.text
    assert B.event_line("weird_kind", "system", None, 7).text == "intake weird kind"


def test_followup_line_is_escaped():
    line = B.followup_line(inquiry_id=1, direction="inbound", sender=HOSTILE, subject=HOSTILE, body=HOSTILE)
    assert_inert(all_mrkdwn(line.blocks) + [line.text])


def test_reply_modal_has_two_distinct_outcomes_and_templates():
    view = B.reply_modal(inquiry_id=5, subject=HOSTILE, sender="a@b.org", latest=HOSTILE,
                         templates=[("Thanks", "Thank you"), ("More", "Tell us more")])
    assert len(view["title"]["text"]) <= B.MAX_MODAL_TITLE
    mode = next(b for b in view["blocks"] if b.get("block_id") == "mode")
    assert mode["element"]["type"] == "radio_buttons"
    assert [o["value"] for o in mode["element"]["options"]] == [B.REPLY_SEND, B.REPLY_NOTE]
    assert all_of_type(view["blocks"], "static_select")[0]["action_id"] == B.A_REPLY_TEMPLATE
    assert json.loads(view["private_metadata"]) == {"inquiry_id": 5, "revision": 0}
    assert_inert(all_mrkdwn(view["blocks"]))
    refilled = B.reply_modal(inquiry_id=5, subject="s", sender=None, latest="", body="Thank you", revision=1,
                             default_action=B.REPLY_NOTE)
    body_block = next(b for b in refilled["blocks"] if b.get("block_id") == "body_1")
    assert body_block["element"]["initial_value"] == "Thank you"
    mode = next(b for b in refilled["blocks"] if b.get("block_id") == "mode")
    assert mode["element"]["initial_option"]["value"] == B.REPLY_NOTE


def test_modal_titles_and_metadata_limits():
    for view in (B.note_modal(inquiry_id=123456789, subject="x"), B.new_inquiry_modal(title="T" * 80),
                 B.full_text_modal(inquiry_id=123456789, subject="x", sender="y", text="z")):
        assert len(view["title"]["text"]) <= B.MAX_MODAL_TITLE
        assert len(view["blocks"]) <= B.MAX_VIEW_BLOCKS
    with pytest.raises(ValueError):
        B.modal("t", [], callback_id="x", private_metadata="m" * 3001)


def test_full_text_modal_splits_long_text_without_losing_it():
    text = ("line & <tag>\n" * 2000)
    view = B.full_text_modal(inquiry_id=1, subject="s", sender="a", text=text)
    sections = [b["text"]["text"] for b in view["blocks"][2:] if b["type"] == "section"]
    assert all(len(s) <= B.MAX_SECTION_TEXT for s in sections)
    assert "".join(sections) == escape(text.strip())
    assert len(view["blocks"]) <= B.MAX_VIEW_BLOCKS


def test_digest_card_and_review_modal():
    rows = [B.InquiryRow(i, f"<!channel> win {i}", "x@spam.example", "spam", "spam") for i in range(1, 130)]
    message = B.digest_card(B.DigestData(counts=[("spam", 120), ("automated", 9)], after_id=0, through_id=129,
                                         samples=rows[:5], notes=["3 acknowledgments held back"]))
    assert "129" in message.text
    review = all_of_type(message.blocks, "button")[0]
    assert (review["action_id"], review["value"]) == (B.A_DIGEST_REVIEW, "0:129")
    assert_inert(all_mrkdwn(message.blocks))
    view = B.digest_review_modal(rows, after_id=0, through_id=129)
    assert len(view["blocks"]) <= B.MAX_VIEW_BLOCKS
    restore = all_of_type(view["blocks"], "button")
    assert restore[0]["action_id"] == B.A_DIGEST_RESTORE and restore[0]["value"] == "1"
    assert "more" in json.dumps(view["blocks"][-1])


def test_home_view_and_lists():
    rows = [B.InquiryRow(i, f"subject {i}", "a@b.org", "new", "press") for i in range(100)]
    view = B.home_view(B.HomeData("U100", mine=rows, unassigned=rows, by_category=[("press", 100)],
                                  by_age=[("under 1 day", 100)]))
    assert view["type"] == "home" and len(view["blocks"]) <= B.MAX_VIEW_BLOCKS
    assert "Open by category" in json.dumps(view)
    refused = B.home_view(B.HomeData("U9", allowed=False))
    assert "not a member" in json.dumps(refused) and "subject" not in json.dumps(refused)
    listing = B.inquiry_list("Open", rows)
    assert len(listing.blocks) <= B.MAX_MESSAGE_BLOCKS and "and 80 more" in json.dumps(listing.blocks)
    empty = B.inquiry_list("Open", [], empty="Nothing <!here>")
    assert "&lt;!here&gt;" in json.dumps(empty.blocks)


# ---- property: no untrusted text ever yields mrkdwn markup -----------------------------------

import re  # noqa: E402

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

_OUR_DATE_TOKEN = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[0-9: -]+UTC>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
hostile_text = st.lists(st.sampled_from(list("<>&|@!#^*_`~ \n:/abcU1") + ["<!channel>", "<@U1>", "&amp;", "é"]),
                        max_size=200).map("".join)


def _markup_free(texts: list[str]) -> bool:
    for text in texts:
        stripped = _ENTITY.sub("", _OUR_DATE_TOKEN.sub("", text))
        if "<" in stripped or ">" in stripped or "&" in stripped:
            return False
    return True


@hsettings(max_examples=150, deadline=None)
@given(subject=hostile_text, body=hostile_text, name=hostile_text, address=hostile_text, reason=hostile_text,
       note=hostile_text)
def test_untrusted_text_never_becomes_markup(subject, body, name, address, reason, note):
    message = B.triage_card(card(subject=subject, latest_reply=body, sender_name=name, sender_address=address,
                                 reasons=(reason,), language=reason[:10],
                                 folded=[B.FoldedItem(7, subject, "new")],
                                 suggestion=B.SuggestionData(subject, body, 0.5)), CATEGORIES)
    assert _markup_free(all_mrkdwn(message.blocks) + [message.text])
    line = B.followup_line(inquiry_id=1, direction="inbound", sender=name, subject=subject, body=body)
    assert _markup_free(all_mrkdwn(line.blocks) + [line.text])
    event = B.event_line("note", "system", {"to": address, "error": note}, 1, text=note)
    assert _markup_free(all_mrkdwn(event.blocks))
    row = B.InquiryRow(1, subject, name, "new", reason)
    assert _markup_free(all_mrkdwn(B.inquiry_list(subject, [row]).blocks))
    assert _markup_free(all_mrkdwn(B.digest_review_modal([row], after_id=0, through_id=1)["blocks"]))
