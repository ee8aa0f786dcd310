"""Slack deliveries (the outbox's cards, thread lines, digest) through the real slack_sdk
WebClient against tests/fakeslack.py over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import pytest
from slack_sdk.errors import SlackApiError

from sqlalchemy import select

from intake import inquiries, outbox
from intake.config import Settings
from intake.db import Database
from intake.jobs import run_job
from intake.models import Delivery, Event, Inquiry, Message
from intake.runtime import Runtime
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    RecordingQueue,
    add_followup,
    fake_slack,
    kicks_held,
    make_inquiry,
    run_delivery,
    slack_config,
    slack_env,
    slack_rt,
    sync_card,
    write_config,
)

HOSTILE_SUBJECT = "URGENT <!channel> wire to <http://evil.example|bank.com> & <@U123>"


def inquiry(rt, inquiry_id: int) -> Inquiry:
    with rt.db.session() as session:
        row = session.get(Inquiry, inquiry_id)
        assert row is not None
        return row


def delivery(rt, key: str) -> Delivery:
    with rt.db.session() as session:
        return session.scalars(select(Delivery).where(Delivery.key == key)).one()


def act(rt, action, inquiry_id, *args):
    """A staff action whose deliveries stay owed (not yet run); returns the event id."""
    with kicks_held(rt):
        with rt.db.session() as session:
            return action(session, inquiry_id, *args).id


def mrkdwn_texts(blocks) -> str:
    out = []

    def walk(obj):
        if isinstance(obj, dict):
            if obj.get("type") == "mrkdwn":
                out.append(obj["text"])
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(blocks)
    return "\n".join(out)


def test_card_is_posted_once_then_updated_in_place(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt, subject=HOSTILE_SUBJECT, body="Hi <!here> & <@U999>")
    assert sync_card(slack_rt, inquiry_id) == "posted"
    post = fake_slack.calls_to("chat.postMessage")[0]
    assert post.params["channel"] == TRIAGE_CHANNEL
    assert post.params["unfurl_links"] is False and post.params["unfurl_media"] is False
    assert "link_names" not in post.params
    assert post.headers["authorization"] == "Bearer xoxb-111-222-fake"
    text = mrkdwn_texts(post.params["blocks"]) + post.params["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<@U123>" not in text
    assert "<http://evil.example|bank.com>" not in text and "&lt;!channel&gt;" in text
    row = inquiry(slack_rt, inquiry_id)
    assert (row.slack_channel, row.slack_ts) == (TRIAGE_CHANNEL, post.params["ts"] if "ts" in post.params else row.slack_ts)
    assert fake_slack.top_level(TRIAGE_CHANNEL)[0]["ts"] == row.slack_ts

    assert sync_card(slack_rt, inquiry_id) == "updated"
    update = fake_slack.calls_to("chat.update")[0]
    assert update.params["ts"] == row.slack_ts and update.params["parse"] == "none"
    assert "link_names" not in update.params
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_rate_limit_is_retried_after_retry_after_without_duplicates(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    assert sync_card(slack_rt, inquiry_id) == "posted"
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    statuses = [c.status for c in fake_slack.calls_to("chat.postMessage")]
    assert statuses == [429, 200]
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    # Owed again later, the card is found by its ts and updated.
    assert sync_card(slack_rt, inquiry_id) == "updated"
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1


def test_an_update_failing_with_a_server_error_is_retried_by_the_outbox(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    fake_slack.server_error("chat.update", times=1)
    assert sync_card(slack_rt, inquiry_id) == "pending"  # backing off, not lost
    assert "internal_error" in (delivery(slack_rt, f"card:{inquiry_id}").last_error or "")
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "updated"
    assert [c.status for c in fake_slack.calls_to("chat.update")] == [500, 200]


def test_a_card_posted_but_answered_500_is_found_not_posted_twice(slack_rt, fake_slack):
    """Slack posted the card and then answered 500: the retry finds it by its metadata."""
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.acted_then_failed("chat.postMessage", times=3)
    assert sync_card(slack_rt, inquiry_id) == "pending"
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1  # it exists, but we do not know its ts
    assert inquiry(slack_rt, inquiry_id).slack_ts is None
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "posted"
    cards = fake_slack.top_level(TRIAGE_CHANNEL)
    assert len(cards) == 1 and len(fake_slack.calls_to("chat.postMessage")) == 1  # no second post
    assert inquiry(slack_rt, inquiry_id).slack_ts == cards[0]["ts"]
    assert cards[0]["metadata"] == {"event_type": "intake_inquiry",
                                    "event_payload": {"key": f"card:{inquiry_id}", "inquiry_id": inquiry_id}}
    lookup = fake_slack.calls_to("conversations.history")[-1]
    assert lookup.params["include_all_metadata"] in (True, "true", "1", 1)


def test_a_worker_killed_after_posting_leaves_one_card(slack_rt, fake_slack):
    """The post went out and the process died before the ts was stored (the lease expired)."""
    inquiry_id = make_inquiry(slack_rt)
    with kicks_held(slack_rt):
        with slack_rt.db.session() as session:
            outbox.owe_card(session, inquiry_id)
    ticket = outbox.worker.claim(slack_rt, delivery(slack_rt, f"card:{inquiry_id}").id)
    from intake.slack.deliveries import deliver_card, _record_card

    # Run the post, but "die" before recording: swap the recording step for nothing.
    import intake.slack.deliveries as deliveries

    original = deliveries._record_card
    deliveries._record_card = lambda *a, **k: False
    try:
        deliver_card(slack_rt, ticket)
    finally:
        deliveries._record_card = original
    assert inquiry(slack_rt, inquiry_id).slack_ts is None and len(fake_slack.top_level()) == 1
    with slack_rt.db.session() as session:  # the lease runs out
        session.scalars(select(Delivery).where(Delivery.key == f"card:{inquiry_id}")).one().leased_until = None
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "posted"
    assert len(fake_slack.top_level()) == 1 and len(fake_slack.calls_to("chat.postMessage")) == 1
    assert inquiry(slack_rt, inquiry_id).slack_ts == fake_slack.top_level()[0]["ts"]
    assert _record_card is original


def test_channel_not_found_is_retried_and_records_nothing(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.error("chat.postMessage", "channel_not_found")
    assert sync_card(slack_rt, inquiry_id) == "pending"
    assert "channel_not_found" in delivery(slack_rt, f"card:{inquiry_id}").last_error
    assert inquiry(slack_rt, inquiry_id).slack_ts is None
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "posted"  # the outbox's retry
    assert len(fake_slack.top_level()) == 1


def test_a_card_deleted_in_slack_is_posted_again(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    old_ts = inquiry(slack_rt, inquiry_id).slack_ts
    fake_slack.messages.clear()  # someone deleted the card
    assert sync_card(slack_rt, inquiry_id) == "posted"
    new = inquiry(slack_rt, inquiry_id)
    assert new.slack_ts != old_ts and len(fake_slack.top_level()) == 1


def test_concurrent_deliveries_leave_exactly_one_card_and_no_delete(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    with kicks_held(slack_rt):
        with slack_rt.db.session() as session:
            outbox.owe_card(session, inquiry_id)
    delivery_id = delivery(slack_rt, f"card:{inquiry_id}").id
    fake_slack.latency = 0.2  # both runs are in flight at once
    results = []
    threads = [threading.Thread(target=lambda: results.append(outbox.deliver(slack_rt, delivery_id)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fake_slack.latency = 0
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    assert fake_slack.top_level(TRIAGE_CHANNEL)[0]["ts"] == inquiry(slack_rt, inquiry_id).slack_ts
    assert sorted(results) == ["not due", "not due", "posted"]
    assert fake_slack.calls_to("chat.delete") == []  # nothing posted and then taken back


def test_a_card_changed_again_while_it_was_being_updated_is_updated_once_more(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    with kicks_held(slack_rt):
        with slack_rt.db.session() as session:
            outbox.owe_card(session, inquiry_id)
    ticket = outbox.worker.claim(slack_rt, delivery(slack_rt, f"card:{inquiry_id}").id)
    act(slack_rt, inquiries.claim, inquiry_id, "U100")  # the card changes while we "work"
    assert outbox.worker._complete(slack_rt, ticket, "updated") is True  # must run again
    row = delivery(slack_rt, f"card:{inquiry_id}")
    assert row.state == "pending"
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "updated"
    assert delivery(slack_rt, f"card:{inquiry_id}").state == "done"
    assert "<@U100>" in mrkdwn_texts(fake_slack.top_level()[0]["blocks"])


def test_category_channel_is_used(fake_slack, db_url, tmp_path):
    config = write_config(tmp_path / "c.toml", {"channels": {"press": "CPRESS"}})
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    rt = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    press = make_inquiry(rt, category="press", sender="j@news.example")
    other = make_inquiry(rt, category="general", sender="g@example.org")
    sync_card(rt, press)
    sync_card(rt, other)
    assert len(fake_slack.top_level("CPRESS")) == 1 and len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    rt.db.dispose()


def test_without_credentials_jobs_log_and_succeed(db_url, tmp_path, caplog):
    settings = Settings.from_env({"DATABASE_URL": db_url, "SLACK_TRIAGE_CHANNEL": "C111",
                                  "INTAKE_CONFIG": str(write_config(tmp_path / "c.toml"))})
    rt = Runtime(settings, Database.from_settings(settings), queue=RecordingQueue())
    inquiry_id = make_inquiry(rt, subject="Logged only")
    with caplog.at_level(logging.INFO, logger="intake.slack.deliveries"):
        assert sync_card(rt, inquiry_id) == "logged"
        event_id = act(rt, inquiries.claim, inquiry_id, "U100")
        assert run_delivery(rt, f"line:event:{event_id}") == "logged"
        make_inquiry(rt, subject="junk", category="spam", status="spam", sender="s@spam.example")
        assert run_job(rt, "slack.digest") == "owed"
    assert "would post card" in caplog.text and "Logged only" in caplog.text
    assert "would post the digest" in caplog.text
    assert inquiry(rt, inquiry_id).slack_ts is None
    rt.db.dispose()


def test_spam_and_automated_go_to_the_digest_not_one_by_one(slack_rt, fake_slack):
    spam = [make_inquiry(slack_rt, subject=f"<!channel> prize {i}", category="spam", status="spam",
                         sender=f"s{i}@spam.example") for i in range(3)]
    auto = make_inquiry(slack_rt, subject="Out of office", category="automated", status="closed",
                        automated=True, sender="ooo@example.org")
    real = make_inquiry(slack_rt, sender="person@example.org")
    for inquiry_id in [*spam, auto]:
        assert sync_card(slack_rt, inquiry_id) == "filtered"
    assert sync_card(slack_rt, real) == "posted"
    assert run_job(slack_rt, "slack.digest") == "owed"  # and delivered by the outbox
    digest = fake_slack.top_level(TRIAGE_CHANNEL)[-1]
    assert "Filtered 4 spam and automated" in digest["text"]
    blob = json.dumps(digest["blocks"])
    assert "`spam`: 3" in blob and "`automated`: 1" in blob and "<!channel>" not in mrkdwn_texts(digest["blocks"])
    button = next(e for b in digest["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["value"] == f"0:{max(spam + [auto])}"
    # Nothing new since: the next run posts nothing.
    assert run_job(slack_rt, "slack.digest") == "empty"
    with slack_rt.db.session() as session:
        events = session.query(Event).filter(Event.kind == "slack_digest").all()
        assert len(events) == 1
    later = make_inquiry(slack_rt, subject="more junk", category="spam", status="spam", sender="z@spam.example")
    assert run_job(slack_rt, "slack.digest") == "owed"
    assert fake_slack.top_level(TRIAGE_CHANNEL)[-1]["text"].startswith("Filtered 1 ")
    assert later > max(spam)


def test_a_burst_from_one_sender_is_folded_into_one_card(slack_rt, fake_slack):
    first = make_inquiry(slack_rt, subject="Question 1", sender="burst@example.org")
    second = make_inquiry(slack_rt, subject="Question 2 <!here>", sender="burst@example.org")
    third = make_inquiry(slack_rt, subject="Question 3", sender="burst@example.org")
    assert sync_card(slack_rt, first) == "posted"
    assert sync_card(slack_rt, second) == "folded"
    assert sync_card(slack_rt, third) == "folded"
    cards = fake_slack.top_level(TRIAGE_CHANNEL)
    assert len(cards) == 1
    thread = fake_slack.thread(TRIAGE_CHANNEL, cards[0]["ts"])
    assert [m["text"].split(" ·")[0] for m in thread] == [f"#{second}", f"#{third}"]
    assert "2 more from this sender" in json.dumps(cards[0]["blocks"])
    assert "<!here>" not in mrkdwn_texts(cards[0]["blocks"])
    # An action on a folded inquiry updates the shared card, and its thread line names it.
    with slack_rt.db.session() as session:
        inquiries.close(session, second, "U100")
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    assert fake_slack.thread(TRIAGE_CHANNEL, cards[0]["ts"])[-1]["text"] == f"#{second} · <@U100> closed it"
    # Another sender is not folded.
    other = make_inquiry(slack_rt, sender="other@example.org")
    assert sync_card(slack_rt, other) == "posted"


def test_burst_window_is_respected(slack_rt, fake_slack):
    old = make_inquiry(slack_rt, sender="slow@example.org",
                       received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    sync_card(slack_rt, old)
    new = make_inquiry(slack_rt, sender="slow@example.org")
    assert sync_card(slack_rt, new) == "posted"


def test_followup_is_posted_in_the_thread_once_and_reopens(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    card_ts = inquiry(slack_rt, inquiry_id).slack_ts
    with slack_rt.db.session() as session:
        inquiries.close(session, inquiry_id, "U100")
    message_id = add_followup(slack_rt, inquiry_id, "One more thing <!channel> & <@U123>")
    with slack_rt.db.session() as session:  # what processing does for a follow-up
        inquiries.on_follow_up(session, session.get(Inquiry, inquiry_id), message_id, automated=False)
    line = fake_slack.thread(TRIAGE_CHANNEL, card_ts)[-1]
    assert line["unfurl_links"] is False
    assert "reopened" in line["text"] and "<!channel>" not in mrkdwn_texts(line["blocks"])
    assert "One more thing" in mrkdwn_texts(line["blocks"])
    assert inquiry(slack_rt, inquiry_id).status == "open"
    with slack_rt.db.session() as session:
        assert session.get(Message, message_id).slack_ts == line["ts"]
    card = fake_slack.top_level(TRIAGE_CHANNEL)[0]
    buttons = [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "inq_close" in buttons and "inq_reopen" not in buttons  # the card was updated
    assert run_delivery(slack_rt, f"line:message:{message_id}") == "not due"  # done once
    assert len([m for m in fake_slack.thread(TRIAGE_CHANNEL, card_ts) if "One more thing" in json.dumps(m)]) == 1


def test_an_automated_followup_does_not_reopen_a_closed_inquiry(slack_rt, fake_slack):
    """The reopen rule lives once, in the lifecycle: an out-of-office reply leaves it closed,
    with Slack on as well as off."""
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    with slack_rt.db.session() as session:
        inquiries.close(session, inquiry_id, "U100")
    message_id = add_followup(slack_rt, inquiry_id, "I am out of the office until Monday.")
    with slack_rt.db.session() as session:
        inquiries.on_follow_up(session, session.get(Inquiry, inquiry_id), message_id, automated=True)
    assert inquiry(slack_rt, inquiry_id).status == "closed"
    line = fake_slack.thread(TRIAGE_CHANNEL, inquiry(slack_rt, inquiry_id).slack_ts)[-1]
    assert "out of the office" in mrkdwn_texts(line["blocks"]) and "reopened" not in line["text"]
    card = fake_slack.top_level(TRIAGE_CHANNEL)[0]
    buttons = [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "inq_reopen" in buttons


def test_event_line_is_posted_once(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    event_id = act(slack_rt, inquiries.add_note, inquiry_id, "Call her back <!channel>", "U100")
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "posted"
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "not due"
    thread = fake_slack.thread(TRIAGE_CHANNEL, inquiry(slack_rt, inquiry_id).slack_ts)
    assert len(thread) == 1 and thread[0]["text"] == "<@U100> added a note"
    assert "Call her back &lt;!channel&gt;" in mrkdwn_texts(thread[0]["blocks"])


def test_a_line_posted_but_answered_500_is_found_not_posted_twice(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    card_ts = inquiry(slack_rt, inquiry_id).slack_ts
    event_id = act(slack_rt, inquiries.add_note, inquiry_id, "Left a voicemail", "U100")
    fake_slack.acted_then_failed("chat.postMessage")
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "pending"
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "posted"
    thread = fake_slack.thread(TRIAGE_CHANNEL, card_ts)
    assert [m["text"] for m in thread] == ["<@U100> added a note"]
    with slack_rt.db.session() as session:
        assert session.get(Event, event_id).slack_ts == thread[0]["ts"]
    assert fake_slack.calls_to("conversations.replies")


def test_a_line_waits_for_its_card(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    event_id = act(slack_rt, inquiries.claim, inquiry_id, "U100")
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "pending"  # no card yet: later
    assert "not posted yet" in delivery(slack_rt, f"line:event:{event_id}").last_error
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "posted"
    assert run_delivery(slack_rt, f"line:event:{event_id}") == "posted"
    card_ts = inquiry(slack_rt, inquiry_id).slack_ts
    assert [m["text"] for m in fake_slack.thread(TRIAGE_CHANNEL, card_ts)] == ["<@U100> claimed it"]
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1


def test_a_slack_outage_past_the_deadline_fails_the_delivery_visibly(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.error("chat.postMessage", "channel_not_found", times=2)
    assert sync_card(slack_rt, inquiry_id) == "pending"
    with slack_rt.db.session() as session:
        row = session.scalars(select(Delivery).where(Delivery.key == f"card:{inquiry_id}")).one()
        row.first_failed_at = row.first_failed_at - slack_rt.settings.outbox.slack_deadline
        row.deadline = row.first_failed_at + slack_rt.settings.outbox.slack_deadline
    assert run_delivery(slack_rt, f"card:{inquiry_id}") == "failed"
    assert delivery(slack_rt, f"card:{inquiry_id}").state == "failed"
    # Owed again (the inquiry changed), the card is tried afresh.
    assert sync_card(slack_rt, inquiry_id) == "posted"


def test_suggested_answer_appears_on_the_card(slack_rt, fake_slack):
    from intake import outbound

    body = "Hello, when is the application deadline for the fellowship this year?"
    suggestion = outbound.suggest_answer(slack_rt.settings, body, "application")
    assert suggestion is not None, "the default knowledge base answers the deadline question"
    inquiry_id = make_inquiry(slack_rt, body=body)
    sync_card(slack_rt, inquiry_id)
    blocks = fake_slack.top_level()[0]["blocks"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert "inq_suggest_send" in ids and "inq_suggest_edit" in ids
    assert "Suggested answer" in mrkdwn_texts(blocks)


def test_acknowledgments_show_on_the_card_not_as_thread_lines(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    sync_card(slack_rt, inquiry_id)
    from intake.events import record_event

    with slack_rt.db.session() as session:
        record_event(session, inquiry_id, "system", "ack_sent", to="ann@example.org")
    card = fake_slack.top_level(TRIAGE_CHANNEL)[0]
    assert "acknowledged by email" in mrkdwn_texts(card["blocks"])
    assert fake_slack.thread(TRIAGE_CHANNEL, card["ts"]) == []


def test_channel_throttle_allows_a_short_burst_then_paces():
    from intake.slack.client import ChannelThrottle

    throttle = ChannelThrottle(0.1, burst=2)
    started = time.monotonic()
    stamps = []
    for _ in range(4):
        throttle.wait("C1")
        stamps.append(time.monotonic() - started)
    throttle.wait("C2")  # another channel has its own bucket
    assert stamps[1] < 0.05 and stamps[2] >= 0.09 and stamps[3] >= 0.19
    assert time.monotonic() - started - stamps[3] < 0.05


def test_clients_retry_only_what_is_safe(slack_rt):
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    from intake.slack.client import listener_client, slack_client

    # The outbox's client: a 429 means Slack did nothing, so it is retried; a 5xx or a dropped
    # connection may come after Slack posted, so the outbox looks before trying again.
    delivery_kinds = {type(h) for h in slack_client(slack_rt).retry_handlers}
    assert delivery_kinds == {RateLimitErrorRetryHandler}
    listener_kinds = {type(h) for h in listener_client(slack_rt).retry_handlers}
    assert {RateLimitErrorRetryHandler, ServerErrorRetryHandler, ConnectionErrorRetryHandler} <= listener_kinds
    assert slack_client(slack_rt).base_url.endswith("/api/")


def test_digest_shows_mail_held_back_by_the_caps(slack_rt, fake_slack):
    """Issue 6: hitting a cap is shown in the digest, even when nothing was filtered."""
    inquiry_id = make_inquiry(slack_rt, sender="busy@example.org")
    with slack_rt.db.session() as session:
        session.add_all([
            Event(inquiry_id=inquiry_id, actor="system", kind="cap_hit", detail={"to": "busy@example.org", "cap": "10 in 10 minutes"}),
            Event(inquiry_id=inquiry_id, actor="system", kind="ack_suppressed", detail={"reasons": ["per-sender"], "cap": "per_sender"}),
            Event(inquiry_id=inquiry_id, actor="system", kind="ack_suppressed", detail={"reasons": ["auto-submitted"]}),
        ])
    assert run_job(slack_rt, "slack.digest") == "owed"
    texts = mrkdwn_texts(fake_slack.top_level(TRIAGE_CHANNEL)[-1]["blocks"])
    assert "1 emails held back by the limit on mail to one address" in texts
    assert "1 acknowledgments skipped: the sender already had one recently" in texts
    assert run_job(slack_rt, "slack.digest") == "empty"  # counted once
