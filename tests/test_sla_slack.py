"""The SLA loop end to end: real emails through the pipeline, the real slack_sdk against the fake
Slack Web API, ``sla.tick`` run at chosen moments (time-machine), on SQLite and PostgreSQL.
Reminders and escalations once per target and stage whatever retries, restarts or concurrent
workers do; the daily digest and the weekly report (chart through files_upload_v2) once per period."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import pytest
import time_machine
from sqlalchemy import select

from intake.config import Settings
from intake.db import Database
from intake.models import Delivery
from intake.outbox import run_due
from intake.outbound import send_reply
from intake.runtime import Runtime
from intake.slack import blocks as B
from intake.sla.calendar import as_utc
from intake.sla.jobs import tick
from intake.jobs import InlineQueue
from tests.fakeslack import TRIAGE_CHANNEL, fake_slack, slack_env, write_config  # noqa: F401
from tests.test_queue_huey import redis_name, redis_settings  # noqa: F401  (fixtures)
from tests.sla_support import STAFF, act, load, new_inquiry, ny, with_sla

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def desk_settings(fake_slack, db_url, tmp_path):
    return with_sla(Settings.from_env(slack_env(fake_slack, db_url, write_config(tmp_path / "intake.toml"))))


@pytest.fixture
def desk(desk_settings):
    """A runtime whose jobs (pipeline, Slack, outbound) run inline, as `intake ingest` runs them."""
    database = Database.from_settings(desk_settings)
    yield Runtime(desk_settings, database, queue=InlineQueue())
    database.dispose()


_OPENED: list[Database] = []


@pytest.fixture(autouse=True)
def _close_workers():
    yield
    while _OPENED:
        _OPENED.pop().dispose()


def another_worker(settings, queue=None) -> Runtime:
    """A second process's runtime: its own connections, its own caches."""
    database = Database.from_settings(settings)
    _OPENED.append(database)
    return Runtime(settings, database, queue=queue if queue is not None else InlineQueue())


def at_once(fn, items, when) -> None:
    """``fn(item)`` for every item in its own thread, all released together at ``when``."""
    barrier = threading.Barrier(len(items))
    errors: list[BaseException] = []

    def run(item):
        try:
            barrier.wait()
            fn(item)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with time_machine.travel(when, tick=False):
        threads = [threading.Thread(target=run, args=(item,)) for item in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors


def card_of(rt, inquiry_id) -> tuple[str, str]:
    row = load(rt, inquiry_id)
    assert row.slack_ts, "the pipeline posted no card"
    return row.slack_channel, row.slack_ts


def thread(fake, rt, inquiry_id) -> list[str]:
    channel, ts = card_of(rt, inquiry_id)
    return [m["text"] for m in fake.thread(channel, ts)]


def card_text(fake, rt, inquiry_id) -> str:
    channel, ts = card_of(rt, inquiry_id)
    card = next(m for m in fake.posted(channel) if m["ts"] == ts)
    return json.dumps(card["blocks"])


def tick_at(rt, *when: int) -> dict:
    with time_machine.travel(ny(*when), tick=False):
        return tick(rt)


def runs(rt, kind: str) -> list[Delivery]:
    """What the outbox holds of one kind (``slack.sla_reminder``...), oldest first."""
    with rt.db.session() as session:
        return list(session.scalars(select(Delivery).where(Delivery.kind == kind).order_by(Delivery.id)))


def poll_at(rt, *when: int) -> dict:
    """What each worker's outbox poller does every few seconds: deliver retries that are due."""
    with time_machine.travel(ny(*when), tick=False):
        return run_due(rt)


# ---- reminders and escalations ---------------------------------------------------------------


def test_reminder_before_the_target_then_overdue_and_escalation_each_once(desk, fake_slack):
    # Monday 7 December 2026, 10:00 New York: a press inquiry is due at 14:00.
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(desk, "tag-press")
        act(desk, "claim", inquiry_id, actor="U200")
    assert "Response due" in card_text(fake_slack, desk, inquiry_id)
    tick_at(desk, 2026, 12, 7, 11, 30)  # 2.5 business hours left: nothing yet
    assert not any("due" in t for t in thread(fake_slack, desk, inquiry_id))

    tick_at(desk, 2026, 12, 7, 12, 5)
    reminders = [t for t in thread(fake_slack, desk, inquiry_id) if ":alarm_clock:" in t]
    assert len(reminders) == 1 and "<@U200>" in reminders[0] and "subteam" not in reminders[0]
    tick_at(desk, 2026, 12, 7, 12, 10)
    tick_at(another_worker(desk.settings), 2026, 12, 7, 12, 15)  # a restarted worker
    assert sum(":alarm_clock:" in t for t in thread(fake_slack, desk, inquiry_id)) == 1

    tick_at(desk, 2026, 12, 7, 14, 1)
    escalations = [t for t in thread(fake_slack, desk, inquiry_id) if "Overdue" in t]
    assert len(escalations) == 1
    assert "<!subteam^S0LEADS>" in escalations[0] and "<@U200>" in escalations[0]
    assert "Overdue" in card_text(fake_slack, desk, inquiry_id)  # the card itself was updated
    for minute in (2, 3, 30):
        tick_at(desk, 2026, 12, 7, 14, minute)
    assert sum("Overdue" in t for t in thread(fake_slack, desk, inquiry_id)) == 1
    assert [r.state for r in runs(desk, "slack.sla_escalation")] == ["done"]


def test_unassigned_reminders_go_to_the_on_call_group(desk, fake_slack):
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(desk, "tag-press")
    tick_at(desk, 2026, 12, 7, 12, 30)
    line = next(t for t in thread(fake_slack, desk, inquiry_id) if ":alarm_clock:" in t)
    assert "<!subteam^S0ONCALL>" in line and "<@" not in line


def test_a_reply_in_time_means_no_reminder_even_if_one_was_owed(desk, fake_slack):
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(desk, "tag-press")
    fake_slack.error("chat.postMessage", "fatal_error", times=1)  # the reminder cannot go out yet
    tick_at(desk, 2026, 12, 7, 12, 5)
    assert [r.state for r in runs(desk, "slack.sla_reminder")] == ["pending"]
    with time_machine.travel(ny(2026, 12, 7, 12, 10), tick=False):
        send_reply(desk, inquiry_id, "Thursday works.", STAFF)
    poll_at(desk, 2026, 12, 7, 12, 45)  # the retry finds the target met
    tick_at(desk, 2026, 12, 7, 15)
    assert not any(":alarm_clock:" in t or "Overdue" in t for t in thread(fake_slack, desk, inquiry_id))
    assert [(r.state, r.result) for r in runs(desk, "slack.sla_reminder")] == [("done", "stale")]
    assert runs(desk, "slack.sla_escalation") == []


def test_slack_outage_is_retried_and_the_line_posted_once(desk, fake_slack):
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(desk, "tag-press")
    fake_slack.server_error("chat.postMessage", times=3)  # beyond the client's own two retries
    tick_at(desk, 2026, 12, 7, 12, 5)
    run = runs(desk, "slack.sla_reminder")[0]
    assert run.state == "pending" and run.attempts == 1 and "internal_error" in (run.last_error or "")
    poll_at(desk, 2026, 12, 7, 12, 5, 1)  # before its backoff: not tried again
    assert runs(desk, "slack.sla_reminder")[0].attempts == 1
    tick_at(desk, 2026, 12, 7, 12, 6)  # a tick does not owe it again
    poll_at(desk, 2026, 12, 7, 12, 7)
    assert sum(":alarm_clock:" in t for t in thread(fake_slack, desk, inquiry_id)) == 1
    assert runs(desk, "slack.sla_reminder")[0].state == "done"


def test_concurrent_workers_owe_and_post_each_notice_once(desk, fake_slack):
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        ids = [new_inquiry(desk, "tag-press", sender=f"p{i}@example.org")[0] for i in range(3)]
    at_once(tick, [another_worker(desk.settings) for _ in range(4)], ny(2026, 12, 7, 12, 30))
    for inquiry_id in ids:
        assert sum(":alarm_clock:" in t for t in thread(fake_slack, desk, inquiry_id)) == 1
    assert len(runs(desk, "slack.sla_reminder")) == 3


# ---- the daily digest ------------------------------------------------------------------------


def test_daily_digest_on_business_days_once_with_links_and_never_on_a_quiet_day(desk, fake_slack):
    with time_machine.travel(ny(2026, 12, 1, 10), tick=False):
        late, _ = new_inquiry(desk, "tag-press", subject="Overdue <!channel> press")
        act(desk, "claim", late, actor="U200")
        waiting, _ = new_inquiry(desk, "tag-general", subject="Waiting one", sender="w@example.org")
        act(desk, "claim", waiting, actor="U200")
        act(desk, "wait_on_applicant", waiting)
    with time_machine.travel(ny(2026, 12, 7, 8), tick=False):
        fresh, _ = new_inquiry(desk, "tag-general", subject="Nobody has this", sender="n@example.org")
    tick_at(desk, 2026, 12, 7, 8, 59)
    assert runs(desk, "slack.sla_digest") == []
    tick_at(desk, 2026, 12, 7, 9, 1)
    tick_at(desk, 2026, 12, 7, 16)  # later the same day: nothing new
    digests = [m for m in fake_slack.top_level(TRIAGE_CHANNEL) if m["text"].startswith("Daily digest")]
    assert len(digests) == 1
    blob = json.dumps(digests[0]["blocks"])
    assert f"#{late}*" in blob and f"#{waiting}*" in blob and f"#{fresh}*" in blob
    assert "&lt;!channel&gt;" in blob and "<!channel>" not in blob
    assert "https://fake.slack.com/archives/" in blob  # each row links to its card
    overdue_part = blob.split("Unassigned")[0]
    assert f"#{late}*" in overdue_part and f"#{fresh}*" not in overdue_part
    assert len(fake_slack.calls_to("chat.getPermalink")) >= 3

    tick_at(desk, 2026, 12, 12, 10)  # Saturday: no digest
    assert [r.key for r in runs(desk, "slack.sla_digest")] == ["sla.digest:2026-12-07"]
    # A quiet day: everything answered or closed, so nothing is posted (but the day is done).
    for inquiry_id in (late, waiting, fresh):
        act(desk, "close", inquiry_id)
    posted_before = len(fake_slack.top_level(TRIAGE_CHANNEL))
    tick_at(desk, 2026, 12, 8, 9, 30)
    assert len(fake_slack.top_level(TRIAGE_CHANNEL)) == posted_before
    assert runs(desk, "slack.sla_digest")[-1].result == "quiet"


# ---- the weekly report -----------------------------------------------------------------------


def test_weekly_report_on_monday_with_its_chart_uploaded_once(desk, fake_slack):
    # The week of Monday 30 November: four inquiries, two answered (one in time, one late), one
    # unanswered past its target, one still inside it.
    arrivals = [((2026, 11, 30, 10), "tag-press"), ((2026, 12, 1, 11), "tag-general"),
                ((2026, 12, 2, 9), "tag-partnership"), ((2026, 12, 3, 15), "tag-general")]
    ids = []
    for i, (when, tag) in enumerate(arrivals):
        with time_machine.travel(ny(*when), tick=False):
            ids.append(new_inquiry(desk, tag, sender=f"s{i}@example.org")[0])
    with time_machine.travel(ny(2026, 11, 30, 12), tick=False):
        send_reply(desk, ids[0], "Yes, Thursday.", STAFF)  # 2 business hours: met (press, 4h)
    with time_machine.travel(ny(2026, 12, 4, 16), tick=False):
        send_reply(desk, ids[1], "Sorry for the delay.", STAFF)  # 29 business hours: missed (16h)
    tick_at(desk, 2026, 12, 7, 9, 0)
    tick_at(desk, 2026, 12, 7, 9, 1)
    tick_at(desk, 2026, 12, 7, 10)
    reports = [m for m in fake_slack.top_level(TRIAGE_CHANNEL) if m["text"].startswith("Weekly report")]
    assert len(reports) == 1
    blob = json.dumps(reports[0]["blocks"])
    # Met: #1. Missed: #2 (answered late) and #3 (partnership, 1d from 09:00: due 17:00 the same
    # day, still unanswered). #4 is still inside its target, so not decided yet.
    assert "*Received*\\n4" in blob and "targets met*\\n33.3%" in blob
    assert "median 15.5 h" in blob and "90th percentile 26.3 h" in blob  # of 2 h and 29 h
    assert "4 (1 overdue)" in blob
    uploads = fake_slack.shared_files(TRIAGE_CHANNEL)
    assert len(uploads) == 1
    assert uploads[0]["thread_ts"] == reports[0]["ts"]
    assert uploads[0]["content"].startswith(PNG_SIGNATURE) and len(uploads[0]["content"]) > 10_000
    assert [c.method for c in fake_slack.calls if c.method.startswith("files") or c.method == "upload"] == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert [r.key for r in runs(desk, "slack.sla_weekly")] == ["sla.weekly:2026-12-07"]
    tick_at(desk, 2026, 12, 8, 9, 30)  # Tuesday: no report
    assert len(runs(desk, "slack.sla_weekly")) == 1


def test_report_and_digest_can_be_turned_off(desk_settings, fake_slack):
    rt = another_worker(with_sla(desk_settings, daily_digest=False, weekly_report=False))
    with time_machine.travel(ny(2026, 12, 4, 10), tick=False):
        new_inquiry(rt, "tag-general")
    tick_at(rt, 2026, 12, 7, 9, 30)
    assert runs(rt, "slack.sla_digest") == [] and runs(rt, "slack.sla_weekly") == []


# ---- App Home and the card's button ------------------------------------------------------------


def test_app_home_lists_my_due_and_overdue_inquiries_first(desk, fake_slack):
    from intake.slack import queries as Q

    with time_machine.travel(ny(2026, 12, 7, 9), tick=False):
        relaxed, _ = new_inquiry(desk, "tag-general", subject="Relaxed", sender="r@example.org")
        urgent, _ = new_inquiry(desk, "tag-press", subject="Urgent", sender="u@example.org")
        for inquiry_id in (relaxed, urgent):
            act(desk, "claim", inquiry_id)
    with time_machine.travel(ny(2026, 12, 7, 14), tick=False):
        with desk.db.session() as session:
            data = Q.home_data(session, STAFF)
    assert [r.inquiry_id for r in data.due] == [urgent, relaxed]
    assert data.due[0].overdue and not data.due[1].overdue
    assert data.mine == []
    view = json.dumps(B.home_view(data))
    assert view.index("Due and overdue (2, 1 overdue)") < view.index("Mine (0)")
    assert view.index(f"#{urgent}*") < view.index(f"#{relaxed}*")


def test_waiting_button_pauses_the_clock(desk, fake_slack):
    from flask import Flask

    from intake.slack.app import build_bolt_app, register_flask
    from tests.fakeslack import button_payload, interactive_body, signed

    inquiry_id, _ = new_inquiry(desk, "tag-general")
    channel, ts = card_of(desk, inquiry_id)
    assert B.A_WAITING in card_text(fake_slack, desk, inquiry_id)
    app = Flask("t")
    register_flask(app, desk, bolt_app=build_bolt_app(desk, process_before_response=True))
    body = interactive_body(button_payload(B.A_WAITING, str(inquiry_id), message_ts=ts))
    response = app.test_client().post("/slack/events", **signed(body, "application/x-www-form-urlencoded"))
    assert response.status_code == 200
    row = load(desk, inquiry_id)
    assert row.status == "waiting" and row.response_due is None
    assert any("waiting on the applicant" in t for t in thread(fake_slack, desk, inquiry_id))
    assert "Resume" in card_text(fake_slack, desk, inquiry_id)


def test_without_slack_the_loop_logs_and_still_owes_once(settings, db):
    rt = Runtime(with_sla(settings), db, queue=InlineQueue())
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        new_inquiry(rt, "tag-press")
    tick_at(rt, 2026, 12, 7, 12, 30)
    tick_at(rt, 2026, 12, 7, 12, 31)
    assert [r.result for r in runs(rt, "slack.sla_reminder")] == ["logged"]


# ---- several Redis workers ---------------------------------------------------------------------


def test_several_redis_workers_post_one_digest(desk_settings, fake_slack, redis_settings, redis_name):
    """Every consumer's scheduler enqueues sla.tick each minute; two workers on one Redis queue
    run those ticks at once and the day still gets one digest."""
    import dataclasses

    from intake.queue import HueyQueue
    settings = dataclasses.replace(desk_settings, redis_url=redis_settings.redis_url)
    with time_machine.travel(ny(2026, 12, 4, 10), tick=False):
        new_inquiry(another_worker(settings), "tag-general")
    queues = [HueyQueue(settings, name=redis_name) for _ in range(2)]
    for queue in queues:
        another_worker(settings, queue)
        queue.enqueue("sla.tick")  # what each consumer's periodic scheduler does at 09:01
        queue.enqueue("sla.tick")

    def drain(queue):
        while (task := queue.huey.dequeue()) is not None:
            queue.huey.execute(task)

    at_once(drain, queues, ny(2026, 12, 7, 9, 1))
    digests = [m for m in fake_slack.top_level(TRIAGE_CHANNEL) if m["text"].startswith("Daily digest")]
    assert len(digests) == 1
    assert queues[0].huey.pending_count() == 0


def test_the_manifest_asks_for_the_chart_upload_scope():
    import yaml

    from tests.conftest import REPO

    for path in (REPO / "manifest.yml", REPO / "intake" / "slack" / "manifest.yml"):
        scopes = set(yaml.safe_load(path.read_text(encoding="utf-8"))["oauth_config"]["scopes"]["bot"])
        assert {"files:write", "chat:write"} <= scopes


def test_a_rate_limited_reminder_waits_for_retry_after_then_posts_once(desk_settings, fake_slack):
    """Slack's 429 outliving the client's own retries: the outbox waits at least Retry-After
    (120 s here, well past its own first backoff), then posts the line once."""
    toml = dict(desk_settings.toml)
    toml["slack"] = {**toml["slack"], "rate_limit_retries": 0}
    rt = another_worker(dataclasses.replace(desk_settings, toml=toml))
    with time_machine.travel(ny(2026, 12, 7, 10), tick=False):
        inquiry_id, _ = new_inquiry(rt, "tag-press")
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=120)
    tick_at(rt, 2026, 12, 7, 12, 5)
    run = runs(rt, "slack.sla_reminder")[0]
    assert run.state == "pending" and run.attempts == 1 and "ratelimited" in (run.last_error or "")
    assert as_utc(run.next_attempt_at) >= ny(2026, 12, 7, 12, 5).astimezone(dt.timezone.utc) + dt.timedelta(seconds=120)
    poll_at(rt, 2026, 12, 7, 12, 6)  # 60 s later: Slack said 120, so not yet
    assert runs(rt, "slack.sla_reminder")[0].attempts == 1
    poll_at(rt, 2026, 12, 7, 12, 8)
    assert runs(rt, "slack.sla_reminder")[0].state == "done"
    assert sum(":alarm_clock:" in t for t in thread(fake_slack, rt, inquiry_id)) == 1
