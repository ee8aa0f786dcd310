"""Slack jobs through the real slack_sdk WebClient against tests/fakeslack.py over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import pytest
from slack_sdk.errors import SlackApiError

from intake import inquiries
from intake.config import Settings
from intake.db import Database
from intake.jobs import run_job
from intake.models import Event, Inquiry, Message
from intake.runtime import Runtime
from intake.slack import jobs as slack_jobs
from tests.fakeslack import (  # noqa: F401  (fixtures)
    TRIAGE_CHANNEL,
    RecordingQueue,
    add_followup,
    fake_slack,
    make_inquiry,
    slack_config,
    slack_env,
    slack_rt,
    write_config,
)

HOSTILE_SUBJECT = "URGENT <!channel> wire to <http://evil.example|bank.com> & <@U123>"


def inquiry(rt, inquiry_id: int) -> Inquiry:
    with rt.db.session() as session:
        row = session.get(Inquiry, inquiry_id)
        assert row is not None
        return row


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
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "posted"
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

    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "updated"
    update = fake_slack.calls_to("chat.update")[0]
    assert update.params["ts"] == row.slack_ts and update.params["parse"] == "none"
    assert "link_names" not in update.params
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_rate_limit_is_retried_after_retry_after_without_duplicates(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "posted"
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    statuses = [c.status for c in fake_slack.calls_to("chat.postMessage")]
    assert statuses == [429, 200]
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    # The job retried by the queue later finds the ts and updates.
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "updated"
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1


def test_server_errors_are_retried_by_the_client(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    fake_slack.server_error("chat.update", times=1)
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "updated"
    assert [c.status for c in fake_slack.calls_to("chat.update")] == [500, 200]


def test_channel_not_found_fails_the_job_and_records_nothing(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.error("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as info:
        run_job(slack_rt, "slack.sync_card", inquiry_id)
    assert info.value.response["error"] == "channel_not_found"
    assert inquiry(slack_rt, inquiry_id).slack_ts is None
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "posted"  # the queue's retry
    assert len(fake_slack.top_level()) == 1


def test_a_card_deleted_in_slack_is_posted_again(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    old_ts = inquiry(slack_rt, inquiry_id).slack_ts
    fake_slack.messages.clear()  # someone deleted the card
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "posted"
    new = inquiry(slack_rt, inquiry_id)
    assert new.slack_ts != old_ts and len(fake_slack.top_level()) == 1


def test_concurrent_runs_leave_exactly_one_card(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    fake_slack.latency = 0.2  # both runs are in flight at once
    results = []
    threads = [threading.Thread(target=lambda: results.append(slack_jobs.sync_card(slack_rt, inquiry_id)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fake_slack.latency = 0
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    assert fake_slack.top_level(TRIAGE_CHANNEL)[0]["ts"] == inquiry(slack_rt, inquiry_id).slack_ts
    assert sorted(results)[0] == "posted"


def test_category_channel_is_used(fake_slack, db_url, tmp_path):
    config = write_config(tmp_path / "c.toml", {"channels": {"press": "CPRESS"}})
    settings = Settings.from_env(slack_env(fake_slack, db_url, config))
    rt = Runtime(settings, Database.from_settings(settings), RecordingQueue())
    press = make_inquiry(rt, category="press", sender="j@news.example")
    other = make_inquiry(rt, category="general", sender="g@example.org")
    run_job(rt, "slack.sync_card", press)
    run_job(rt, "slack.sync_card", other)
    assert len(fake_slack.top_level("CPRESS")) == 1 and len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    rt.db.dispose()


def test_without_credentials_jobs_log_and_succeed(db_url, tmp_path, caplog):
    settings = Settings.from_env({"DATABASE_URL": db_url, "SLACK_TRIAGE_CHANNEL": "C111",
                                  "INTAKE_CONFIG": str(write_config(tmp_path / "c.toml"))})
    rt = Runtime(settings, Database.from_settings(settings), RecordingQueue())
    inquiry_id = make_inquiry(rt, subject="Logged only")
    with caplog.at_level(logging.INFO, logger="intake.slack.jobs"):
        assert run_job(rt, "slack.sync_card", inquiry_id) == "logged"
        with rt.db.session() as session:
            event = inquiries.claim(session, inquiry_id, "U100")
            session.flush()
            event_id = event.id
        assert run_job(rt, "slack.post_event", event_id) == "logged"
        make_inquiry(rt, subject="junk", category="spam", status="spam", sender="s@spam.example")
        assert run_job(rt, "slack.digest") == "logged"
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
        assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "filtered"
    assert run_job(slack_rt, "slack.sync_card", real) == "posted"
    assert run_job(slack_rt, "slack.digest") == "posted"
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
        assert len(events) == 1 and events[0].slack_ts == digest["ts"]
    later = make_inquiry(slack_rt, subject="more junk", category="spam", status="spam", sender="z@spam.example")
    assert run_job(slack_rt, "slack.digest") == "posted"
    assert fake_slack.top_level(TRIAGE_CHANNEL)[-1]["text"].startswith("Filtered 1 ")
    assert later > max(spam)


def test_a_burst_from_one_sender_is_folded_into_one_card(slack_rt, fake_slack):
    first = make_inquiry(slack_rt, subject="Question 1", sender="burst@example.org")
    second = make_inquiry(slack_rt, subject="Question 2 <!here>", sender="burst@example.org")
    third = make_inquiry(slack_rt, subject="Question 3", sender="burst@example.org")
    assert run_job(slack_rt, "slack.sync_card", first) == "posted"
    assert run_job(slack_rt, "slack.sync_card", second) == "folded"
    assert run_job(slack_rt, "slack.sync_card", third) == "folded"
    cards = fake_slack.top_level(TRIAGE_CHANNEL)
    assert len(cards) == 1
    thread = fake_slack.thread(TRIAGE_CHANNEL, cards[0]["ts"])
    assert [m["text"].split(" ·")[0] for m in thread] == [f"#{second}", f"#{third}"]
    assert "2 more from this sender" in json.dumps(cards[0]["blocks"])
    assert "<!here>" not in mrkdwn_texts(cards[0]["blocks"])
    # An action on a folded inquiry updates the shared card, and its thread line names it.
    with slack_rt.db.session() as session:
        event = inquiries.close(session, second, "U100")
        session.flush()
        event_id = event.id
    run_job(slack_rt, "slack.sync_card", second)
    run_job(slack_rt, "slack.post_event", event_id)
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1
    assert fake_slack.thread(TRIAGE_CHANNEL, cards[0]["ts"])[-1]["text"] == f"#{second} · <@U100> closed it"
    # Another sender is not folded.
    other = make_inquiry(slack_rt, sender="other@example.org")
    assert run_job(slack_rt, "slack.sync_card", other) == "posted"


def test_burst_window_is_respected(slack_rt, fake_slack):
    old = make_inquiry(slack_rt, sender="slow@example.org",
                       received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    run_job(slack_rt, "slack.sync_card", old)
    new = make_inquiry(slack_rt, sender="slow@example.org")
    assert run_job(slack_rt, "slack.sync_card", new) == "posted"


def test_followup_is_posted_in_the_thread_once_and_reopens(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    card_ts = inquiry(slack_rt, inquiry_id).slack_ts
    with slack_rt.db.session() as session:
        inquiries.close(session, inquiry_id, "U100")
    message_id = add_followup(slack_rt, inquiry_id, "One more thing <!channel> & <@U123>")
    assert run_job(slack_rt, "slack.post_followup", message_id) == "posted"
    line = fake_slack.thread(TRIAGE_CHANNEL, card_ts)[-1]
    assert line["unfurl_links"] is False
    assert "reopened" in line["text"] and "<!channel>" not in mrkdwn_texts(line["blocks"])
    assert "One more thing" in mrkdwn_texts(line["blocks"])
    assert inquiry(slack_rt, inquiry_id).status == "open"
    with slack_rt.db.session() as session:
        assert session.get(Message, message_id).slack_ts == line["ts"]
        reopened = session.query(Event).filter(Event.kind == "reopened").one()
        assert reopened.slack_ts == line["ts"]  # the follow-up line stands for it
    card = fake_slack.top_level(TRIAGE_CHANNEL)[0]
    buttons = [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "inq_close" in buttons and "inq_reopen" not in buttons  # the card was updated
    assert run_job(slack_rt, "slack.post_followup", message_id) == "skipped"
    assert len(fake_slack.thread(TRIAGE_CHANNEL, card_ts)) == 1


def test_event_line_is_posted_once(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    with slack_rt.db.session() as session:
        event = inquiries.add_note(session, inquiry_id, "Call her back <!channel>", "U100")
        session.flush()
        event_id = event.id
    assert run_job(slack_rt, "slack.post_event", event_id) == "posted"
    assert run_job(slack_rt, "slack.post_event", event_id) == "skipped"
    thread = fake_slack.thread(TRIAGE_CHANNEL, inquiry(slack_rt, inquiry_id).slack_ts)
    assert len(thread) == 1 and thread[0]["text"] == "<@U100> added a note"
    assert "Call her back &lt;!channel&gt;" in mrkdwn_texts(thread[0]["blocks"])


def test_event_before_its_card_posts_the_card_first(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    with slack_rt.db.session() as session:
        event = inquiries.claim(session, inquiry_id, "U100")
        session.flush()
        event_id = event.id
    assert run_job(slack_rt, "slack.post_event", event_id) == "posted"
    card_ts = inquiry(slack_rt, inquiry_id).slack_ts
    assert [m["text"] for m in fake_slack.thread(TRIAGE_CHANNEL, card_ts)] == ["<@U100> claimed it"]
    assert run_job(slack_rt, "slack.sync_card", inquiry_id) == "updated"  # the queued job, later
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == 1


def test_no_card_possible_means_retry_later(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    with slack_rt.db.session() as session:
        event = inquiries.claim(session, inquiry_id, "U100")
        session.flush()
        event_id = event.id
    fake_slack.error("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError):
        run_job(slack_rt, "slack.post_event", event_id)
    with slack_rt.db.session() as session:
        assert session.get(Event, event_id).slack_ts is None


def test_suggested_answer_appears_on_the_card(slack_rt, fake_slack):
    outbound = pytest.importorskip("intake.outbound")
    body = "Hello, when is the application deadline for the fellowship this year?"
    suggestion = outbound.suggest_answer(slack_rt.settings, body, "application")
    if suggestion is None:
        pytest.skip("the default knowledge base has no match for this text")
    inquiry_id = make_inquiry(slack_rt, body=body)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    blocks = fake_slack.top_level()[0]["blocks"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert "inq_suggest_send" in ids and "inq_suggest_edit" in ids
    assert "Suggested answer" in mrkdwn_texts(blocks)


def test_acknowledgments_show_on_the_card_not_as_thread_lines(slack_rt, fake_slack):
    inquiry_id = make_inquiry(slack_rt)
    run_job(slack_rt, "slack.sync_card", inquiry_id)
    with slack_rt.db.session() as session:
        event = Event(inquiry_id=inquiry_id, actor="system", kind="ack_sent", detail={"to": "ann@example.org"})
        session.add(event)
        session.flush()
        event_id = event.id
    assert run_job(slack_rt, "slack.post_event", event_id) == "quiet"
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


def test_client_has_rate_limit_and_error_retry_handlers(slack_rt):
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    from intake.slack.client import slack_client

    client = slack_client(slack_rt)
    kinds = {type(h) for h in client.retry_handlers}
    assert {RateLimitErrorRetryHandler, ServerErrorRetryHandler, ConnectionErrorRetryHandler} <= kinds
    assert client.base_url.endswith("/api/")


def test_digest_shows_mail_held_back_by_the_caps(slack_rt, fake_slack):
    """Issue 6: hitting a cap is shown in the digest, even when nothing was filtered."""
    inquiry_id = make_inquiry(slack_rt, sender="busy@example.org")
    with slack_rt.db.session() as session:
        session.add_all([
            Event(inquiry_id=inquiry_id, actor="system", kind="cap_hit", detail={"to": "busy@example.org", "cap": "10 in 10 minutes"}),
            Event(inquiry_id=inquiry_id, actor="system", kind="ack_suppressed", detail={"reasons": ["per-sender"], "cap": "per_sender"}),
            Event(inquiry_id=inquiry_id, actor="system", kind="ack_suppressed", detail={"reasons": ["auto-submitted"]}),
        ])
    assert run_job(slack_rt, "slack.digest") == "posted"
    texts = mrkdwn_texts(fake_slack.top_level(TRIAGE_CHANNEL)[-1]["blocks"])
    assert "1 emails held back by the limit on mail to one address" in texts
    assert "1 acknowledgments skipped: the sender already had one recently" in texts
    assert run_job(slack_rt, "slack.digest") == "empty"  # counted once
