"""The outbox under real faults, with real processes: `intake serve` (web only) and two
`intake worker`s on Redis, the fake Slack Web API over HTTP, an aiosmtpd SMTP server, on SQLite
and PostgreSQL.

A burst of inquiries arrives over HTTP while workers and the web server are killed with SIGKILL,
Slack answers 429 and "posted, then 500", and the mail server is down for longer than the old
attempt budget. After recovery every side effect happened exactly once:

- every message processed, one inquiry each;
- exactly one card per inquiry, and no card posted twice (none deleted either);
- exactly one acknowledgment per inquiry reached the mail server (a byte-identical copy is the
  one exception SMTP allows, after a kill between the server's 250 and our "sent"; we count
  distinct Message-IDs per recipient);
- no delivery left pending, failed or leased.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from intake.db import Database
from intake.models import Delivery, Event, Inquiry, Message
from tests.fakeslack import BOT_TOKEN, SIGNING_SECRET, TRIAGE_CHANNEL, FakeSlack
from tests.fixtures.inbound import helpers as h
from tests.smtp_servers import free_port, plain_server
from tests.test_app_inbound import mime_request
from tests.test_queue_huey import REDIS_URL
from tests.test_serve_process import base_env, running

pytestmark = pytest.mark.slow

BURST = 40
FROM = "desk@fellowship.example.org"

CONFIG = """
[slack]
post_interval_seconds = 0
burst_minutes = 0

[outbox]
poll_seconds = 0.3
kick_grace_seconds = 2
first_retry_seconds = 0.3
max_retry_seconds = 1.5
lease_seconds = 15
email_delayed_after_minutes = 0.1

[acknowledgments]
categories = ["application", "applicant_status", "partnership", "press", "funding", "volunteer",
              "events", "vendor", "feedback", "general"]
"""


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")


def inquiry_email(n: int) -> bytes:
    return (
        f"From: Applicant {n} <applicant{n}@example.org>\r\nTo: {FROM}\r\n"
        f"Subject: Question {n} about the fellowship\r\n"
        f"Message-ID: <fault-{n}-{uuid.uuid4().hex[:8]}@example.org>\r\n"
        f"Date: Tue, 01 Dec 2026 09:12:00 -0500\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, what is the deadline to apply for the fellowship? I am applicant number {n}.\r\n"
    ).encode()


class Workers:
    """Two `intake worker` processes that a test can kill and restart."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def start(self) -> subprocess.Popen:
        self.started += 1
        log = open(self.tmp_path / f"worker{self.started}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "intake.serve", "worker", "--workers", "2"],
                                env=self.env, cwd=self.tmp_path, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def kill_one(self) -> None:
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            alive[0].send_signal(signal.SIGKILL)
            alive[0].wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def post_until_stored(url_holder: dict[str, str], raw: bytes) -> None:
    """A provider: retries until it gets a 2xx (the web server may be down for a moment)."""
    path, kwargs = mime_request(raw, None)
    headers = {**kwargs["headers"], "Content-Type": kwargs["content_type"]}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            response = requests.post(url_holder["url"] + path, data=kwargs["data"], headers=headers, timeout=10)
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("the web server never stored a message")


@contextlib.contextmanager
def web_server(env: dict[str, str], tmp_path: Path, name: str):
    port = free_port()
    command = [sys.executable, "-m", "intake.serve", "serve", "--port", str(port), "--workers", "2"]
    with running(command, env, tmp_path, port, name=name) as server:
        yield server


def test_sigkill_outages_and_ambiguous_answers_lose_nothing_and_do_nothing_twice(db_url, tmp_path):
    _redis_or_skip()
    queue_name = f"intake-faults-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "intake.toml"
    config.write_text(CONFIG, encoding="utf-8")
    smtp_port = free_port()  # nothing listens here yet: the mail server is down
    database = Database(db_url)
    with FakeSlack(latency=0.02) as slack:
        env = base_env(
            db_url, tmp_path,
            REDIS_URL=REDIS_URL, INTAKE_QUEUE_NAME=queue_name, INTAKE_CONFIG=str(config),
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_TRIAGE_CHANNEL=TRIAGE_CHANNEL, SLACK_API_URL=slack.api_url,
            SMTP_URL=f"smtp://127.0.0.1:{smtp_port}?timeout=3", INTAKE_FROM_ADDRESS=FROM,
            # The seed model fitted once for the test run, not by every process it starts.
            INTAKE_CACHE_DIR=os.environ["INTAKE_CACHE_DIR"],
        )
        # Slack's bad moments: rate limits, and posts that happened but answered 500.
        slack.rate_limit("chat.postMessage", times=3, retry_after=1)
        slack.acted_then_failed("chat.postMessage", times=4)
        workers = Workers(env, tmp_path)
        workers.start()
        workers.start()
        url: dict[str, str] = {}
        try:
            with contextlib.ExitStack() as stack:
                server = stack.enter_context(web_server(env, tmp_path, "web1"))
                url["url"] = server.url
                emails = [inquiry_email(n) for n in range(BURST)]
                sender = threading.Thread(target=lambda: [post_until_stored(url, raw) for raw in emails])
                sender.start()
                # Mid-burst: kill a worker, start another; kill the web server, start another.
                h.wait_for(lambda: _count(database, Message, Message.direction == "inbound") >= BURST // 4,
                           timeout=60, what="a quarter of the burst stored")
                workers.kill_one()
                workers.start()
                h.wait_for(lambda: _count(database, Message, Message.direction == "inbound") >= BURST // 2,
                           timeout=60, what="half of the burst stored")
                server.proc.send_signal(signal.SIGKILL)
                server.proc.wait(10)
                stack.close()
                server = stack.enter_context(web_server(env, tmp_path, "web2"))
                url["url"] = server.url
                h.wait_for(lambda: _count(database, Delivery, Delivery.kind == "slack.card") >= BURST // 2,
                           timeout=60, what="cards owed")
                workers.kill_one()  # a worker dies while deliveries are in flight
                workers.start()
                sender.join(120)
                assert not sender.is_alive()
                # The mail server was down for all of that; it has been failing for longer than
                # the old budget of attempts. Now it comes back.
                h.wait_for(lambda: _count(database, Event, Event.kind == "smtp_delayed") >= 1, timeout=60,
                           what="staff to be told that mail is delayed")
                with plain_server(smtp_port) as smtp:
                    h.wait_for(lambda: _settled(database), timeout=150, what="every delivery to be done")
                    time.sleep(1.0)  # a duplicate, if there were one, would show now
                    received = list(smtp.received)
        finally:
            workers.stop()
            _clean_redis(queue_name)

        with database.session() as session:
            assert _count(database, Message, Message.direction == "inbound") == BURST
            assert session.scalar(select(func.count()).select_from(Message).where(
                Message.direction == "inbound", Message.state != "processed")) == 0
            assert session.scalar(select(func.count()).select_from(Inquiry)) == BURST
            card_ts = [ts for (ts,) in session.execute(select(Inquiry.slack_ts))]
            failed = session.scalars(select(Delivery).where(Delivery.state != "done")).all()
            assert failed == [], [(d.key, d.state, d.last_error) for d in failed]
            assert session.scalar(select(func.count()).select_from(Event).where(Event.kind == "send_failed")) == 0
            acks = session.scalar(select(func.count()).select_from(Message).where(
                Message.kind == "acknowledgment", Message.state == "sent"))
        # One card per inquiry, each posted once: none twice, none deleted. (The channel may hold
        # other top-level posts: forty people asking the deadline are also one group, whose card,
        # if the periodic refresh ran, is posted once.)
        top = slack.top_level(TRIAGE_CHANNEL)
        cards = [m for m in top if (m.get("metadata") or {}).get("event_type") == "intake_inquiry"]
        assert len([m for m in top if (m.get("metadata") or {}).get("event_type") == "intake_group"]) <= 1
        assert len(cards) == BURST
        assert sorted(card_ts) == sorted(c["ts"] for c in cards)
        assert slack.calls_to("chat.delete") == []
        # One acknowledgment per inquiry reached the mail server.
        assert acks == BURST
        per_recipient = collections.defaultdict(set)
        for got in received:
            per_recipient[tuple(got.rcpt_tos)].add(got.message["Message-ID"])
        assert len(per_recipient) == BURST
        assert all(len(ids) == 1 for ids in per_recipient.values()), per_recipient
    database.dispose()


def _count(database: Database, model, *where) -> int:
    with database.read_session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _settled(database: Database) -> bool:
    with database.read_session() as session:
        inbound = session.scalar(select(func.count()).select_from(Message).where(
            Message.direction == "inbound", Message.state == "processed"))
        open_deliveries = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.state == "pending"))
        sent = session.scalar(select(func.count()).select_from(Message).where(
            Message.kind == "acknowledgment", Message.state == "sent"))
    return inbound == BURST and open_deliveries == 0 and sent == BURST


def _clean_redis(name: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    # huey strips characters it does not allow in names (hyphens among them).
    for pattern in (f"*{name}*", f"*{name.replace('-', '')}*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
