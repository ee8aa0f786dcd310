"""Slack benchmarks: /slack/events acknowledgement latency, and webhook -> triage card time.

    .venv/bin/python bench/slack.py                       # PostgreSQL at 127.0.0.1 (fresh schema)
    .venv/bin/python bench/slack.py --database sqlite     # the embedded default
    .venv/bin/python bench/slack.py --rounds 20 --emails 20

Starts the production shape, ``intake serve --workers 2`` (gunicorn sync workers, embedded huey
queue and consumer), pointed at a fake Slack Web API in this process (tests/fakeslack.py, real
HTTP), and measures:

1. **Ack latency under 20 concurrent clicks.** Rounds of 20 "Claim" button clicks on 20
   different inquiries, sent at once, each request signed exactly as Slack signs it. The time
   is the HTTP round trip of /slack/events, i.e. what Slack's 3-second timer sees. The work
   after the ack (the claim, then the card update and thread line through the queue) goes on in
   the background and competes for the same two cores, as it would in production.
2. **Webhook -> card posted.** Emails POSTed to /inbound/mime one after another (a new sender
   each, so no burst folding), timed from the start of the POST to the moment the fake Slack
   receives the card's chat.postMessage. Includes the queue hop, parsing, classification and
   the per-channel pacing (one post a second a channel, as Slack asks).

Prints p50/p95/p99 and writes nothing else; copy the figures into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.inbound.mime import sign  # noqa: E402
from intake.jobs import InlineQueue  # noqa: E402
from intake.runtime import Runtime  # noqa: E402
from tests.fakeslack import (  # noqa: E402
    FakeSlack,
    button_payload,
    interactive_body,
    make_inquiry,
    signed,
    slack_env,
    write_config,
)

PG_URL = os.environ.get("INTAKE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HMAC_SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, values_ms: list[float]) -> str:
    return (f"{name}: n={len(values_ms)} p50={statistics.median(values_ms):.0f} ms "
            f"p95={percentile(values_ms, 95):.0f} ms p99={percentile(values_ms, 99):.0f} ms "
            f"max={max(values_ms):.0f} ms")


class Schema:
    """A fresh database: a PostgreSQL schema (dropped after) or a SQLite file."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp / 'bench.db'}"
            return
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(PG_URL)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        self.url = f"{PG_URL}?options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        if self.kind != "sqlite":
            with self.admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self.admin.dispose()


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    log_file = open(log_path, "wb")  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "intake"), "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"intake serve exited: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    raise SystemExit("intake serve did not become healthy in 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def bench_acks(base: str, rt: Runtime, fake: FakeSlack, rounds: int, concurrency: int) -> list[float]:
    """Latency of /slack/events for rounds of concurrent button clicks (first round is warm-up)."""
    ids = [make_inquiry(rt, subject=f"Click target {i}", sender=f"click{i}@example.org")
           for i in range(concurrency * (rounds + 1))]
    give_cards(rt, fake, ids)
    session_local = threading.local()

    def click(inquiry_id: int) -> float:
        http = getattr(session_local, "s", None) or requests.Session()
        session_local.s = http
        kwargs = signed(interactive_body(button_payload("inq_claim", str(inquiry_id))),
                        "application/x-www-form-urlencoded")
        started = time.perf_counter()
        response = http.post(f"{base}/slack/events", timeout=10, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"/slack/events answered {response.status_code}: {response.text[:200]}")
        return elapsed

    latencies: list[float] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for round_no in range(rounds + 1):
            batch = ids[round_no * concurrency:(round_no + 1) * concurrency]
            results = list(pool.map(click, batch))
            if round_no > 0:
                latencies += results
            time.sleep(0.5)
    return latencies


def give_cards(rt: Runtime, fake: FakeSlack, ids: list[int]) -> None:
    """Click targets already have cards in the channel, as in real use (posting 200 cards at
    Slack's one a second would take minutes and measure nothing new)."""
    from sqlalchemy import update

    from intake.models import Inquiry

    with rt.db.session() as session:
        for n, inquiry_id in enumerate(ids):
            ts = f"1690000000.{n:06d}"
            session.execute(update(Inquiry).where(Inquiry.id == inquiry_id)
                            .values(slack_channel="C111", slack_ts=ts))
            fake.messages[("C111", ts)] = {"channel": "C111", "ts": ts, "text": f"Inquiry #{inquiry_id}"}


def wait_for_drain(fake: FakeSlack, quiet: float = 3.0, limit: float = 600.0) -> float:
    """Wait until the background work of the clicks is done (no Slack call for ``quiet`` s)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        last = fake.calls[-1].at if fake.calls else 0.0
        if time.monotonic() - last >= quiet:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def email(subject: str, sender: str) -> bytes:
    return (
        f"From: Applicant <{sender}>\r\nTo: fellowship@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mail.example.org>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello, I would like to apply to the fellowship. What is the deadline and is there a stipend?\r\n"
        "Thank you,\r\nA. Applicant\r\n"
    ).encode()


def card_time(fake: FakeSlack, token: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in fake.calls_to("chat.postMessage", ok_only=True):
            if token in str(call.params.get("text", "")) and not call.params.get("thread_ts"):
                return call.at
        time.sleep(0.01)
    return None


def bench_cards(base: str, fake: FakeSlack, count: int, spacing: float) -> list[float]:
    """Webhook -> card posted, one email every ``spacing`` seconds (first one is warm-up)."""
    times: list[float] = []
    for i in range(count + 1):
        token = f"T{uuid.uuid4().hex[:8]}"
        body = email(f"Application question {token}", f"applicant{i}-{token.lower()}@example.org")
        started = time.monotonic()
        response = requests.post(f"{base}/inbound/mime", data=body, timeout=30,
                                 headers={"X-Intake-Signature": sign(body, HMAC_SECRET),
                                          "Content-Type": "message/rfc822"})
        if response.status_code >= 300:
            raise RuntimeError(f"/inbound/mime answered {response.status_code}: {response.text[:200]}")
        posted = card_time(fake, token, timeout=60)
        if posted is None:
            print(f"  card for email {i} not posted within 60 s", file=sys.stderr)
            continue
        if i > 0:
            times.append((posted - started) * 1000)
        time.sleep(spacing)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of concurrent clicks")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--emails", type=int, default=15)
    parser.add_argument("--spacing", type=float, default=1.5, help="seconds between emails")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack() as fake:
        tmp = Path(tmp_name)
        schema = Schema(args.database, tmp)
        proc = None
        try:
            Database(schema.url).create_all()
            config = write_config(tmp / "intake.toml", {"post_interval_seconds": 1.0})
            env = slack_env(fake, schema.url, config, INBOUND_HMAC_SECRET=HMAC_SECRET,
                            INTAKE_QUEUE_PATH=str(tmp / "queue.db"), INTAKE_QUEUE_NAME=f"bench-{uuid.uuid4().hex[:6]}")
            settings = Settings.from_env(env)
            rt = Runtime(settings, Database(schema.url), queue=InlineQueue())
            port = free_port()
            server_log = Path(os.environ.get("BENCH_SERVER_LOG") or tmp / "server.log")
            proc = start_server(env, port, server_log)
            base = f"http://127.0.0.1:{port}"
            print(f"intake serve (2 gunicorn workers + embedded consumer) on {args.database}; fake Slack at {fake.api_url}")
            acks = bench_acks(base, rt, fake, args.rounds, args.concurrency)
            print(summary(f"/slack/events ack, {args.concurrency} concurrent clicks", acks))
            drained = wait_for_drain(fake)
            lines = [c for c in fake.calls_to("chat.postMessage", ok_only=True) if c.params.get("thread_ts")]
            print(f"  background: {len(fake.calls_to('chat.update', ok_only=True))} card updates and "
                  f"{len(lines)} thread lines, drained {drained:.0f} s after the last click "
                  "(thread lines are paced at one a second a channel)")
            cards = bench_cards(base, fake, args.emails, args.spacing)
            if cards:
                print(summary("webhook -> card posted", cards))
            rt.db.dispose()
            print(json.dumps({"database": args.database, "ack_ms": {"p50": statistics.median(acks),
                              "p99": percentile(acks, 99)},
                              "card_ms": {"p50": statistics.median(cards) if cards else None,
                                          "p95": percentile(cards, 95) if cards else None}}))
        finally:
            if proc is not None:
                stop_server(proc)
            schema.drop()


if __name__ == "__main__":
    main()
