"""Response targets: what the business calendar, the minute tick and the report cost.

    .venv/bin/python bench/sla.py --open 2000 --received 5000 --database both --plot /tmp/sla.png

Measures, on a fresh database per backend:
  calendar   BusinessCalendar.add and .between (New York, US public holidays), per call
  tick       one sla.tick with --open inquiries owing a reply (reconcile every unanswered one,
             find and owe the reminders and escalations due), then a second tick that owes
             nothing new: what every worker pays each minute
  report     intake report's figures over 30 days holding --received inquiries, and the chart

Slack is off (deliveries are logged), so only intake's own work is timed; the tick is timed
without its deliveries (held back from the queue), which are then timed on their own. Prints one line per
figure; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import time_machine  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.migrate import upgrade  # noqa: E402
from intake.models import Contact, Inquiry  # noqa: E402
from intake.outbox import run_due  # noqa: E402
from intake.runtime import Runtime  # noqa: E402
from intake.sla import clock, report  # noqa: E402
from intake.sla.chart import render_png  # noqa: E402
from intake.sla.jobs import tick  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NY = ZoneInfo("America/New_York")
NOW = dt.datetime(2026, 12, 7, 12, 30, tzinfo=NY)
CATEGORIES = ["application", "applicant_status", "partnership", "press", "funding", "volunteer",
              "events", "vendor", "feedback", "general", "spam", "automated"]
WEIGHTS = [30, 15, 6, 4, 5, 6, 5, 6, 5, 10, 6, 2]


class HeldQueue:
    """Keeps what the outbox hands the queue, so a tick is timed without its deliveries."""

    def __init__(self) -> None:
        self.held: list[tuple[str, tuple]] = []

    def bind(self, rt) -> None:
        pass

    def enqueue(self, name: str, *args, delay=None) -> None:
        self.held.append((name, args))

    def ping(self) -> None:
        pass


def runtime(url: str) -> Runtime:
    settings = Settings.from_env({"DATABASE_URL": url})
    toml = {**settings.toml, "sla": {**settings.toml["sla"], "timezone": "America/New_York",
                                     "holiday_country": "US"}}
    return Runtime(dataclasses.replace(settings, toml=toml), queue=HeldQueue())


def bench_calendar(rules: clock.Policy, n: int = 20000) -> None:
    rng = random.Random(1)
    starts = [NOW - dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 60)) for _ in range(n)]
    spans = [dt.timedelta(minutes=rng.randrange(0, 60 * 40)) for _ in range(n)]
    began = time.perf_counter()
    ends = [rules.calendar.add(s, d) for s, d in zip(starts, spans)]
    add_us = (time.perf_counter() - began) / n * 1e6
    began = time.perf_counter()
    for s, e in zip(starts, ends):
        rules.calendar.between(s, e)
    between_us = (time.perf_counter() - began) / n * 1e6
    print(f"calendar   add {add_us:.1f} µs/call, between {between_us:.1f} µs/call (targets up to 40 business hours)")


def seed(rt: Runtime, count: int, *, days: int, answered_share: float, rng: random.Random) -> None:
    """``count`` inquiries received over ``days`` before NOW, with targets as the pipeline sets them."""
    rules = clock.policy(rt)
    with rt.db.session() as session:
        contact = Contact(address=f"bench-{uuid.uuid4().hex[:8]}@example.org")
        session.add(contact)
        session.flush()
        for _ in range(count):
            category = rng.choices(CATEGORIES, WEIGHTS)[0]
            received = NOW - dt.timedelta(minutes=rng.randrange(0, days * 24 * 60))
            status = "spam" if category == "spam" else "closed" if category == "automated" else "open"
            inquiry = Inquiry(contact_id=contact.id, subject="bench", thread_subject="bench", status=status,
                              category=category, received_at=received, last_message_at=received)
            clock.start(inquiry, rules, received)
            if status == "open" and rng.random() < answered_share:
                answered = received + dt.timedelta(minutes=rng.randrange(5, 60 * 72))
                if answered < NOW:
                    clock.responded(inquiry, answered)
                    inquiry.status = "waiting"
            session.add(inquiry)


def reset(url: str) -> None:
    if url.startswith("postgresql"):
        engine = create_engine(PG)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS bench_sla CASCADE"))
            conn.execute(text("CREATE SCHEMA bench_sla"))
        engine.dispose()
    upgrade(url)


def bench_backend(name: str, url: str, args: argparse.Namespace) -> None:
    reset(url)
    rt = runtime(url)
    rng = random.Random(7)
    seed(rt, args.open, days=5, answered_share=0.0, rng=rng)
    with time_machine.travel(NOW, tick=False):
        began = time.perf_counter()
        first = tick(rt)
        first_s = time.perf_counter() - began
        began = time.perf_counter()
        second = tick(rt)
        second_s = time.perf_counter() - began
        began = time.perf_counter()
        delivered = run_due(rt, fresh_too=True)
        deliver_s = time.perf_counter() - began
    print(f"tick       {name}: {args.open} open inquiries: first tick {first_s * 1000:.0f} ms "
          f"(owed {first['notices']} notices), next tick {second_s * 1000:.0f} ms (owed {second['notices']}); "
          f"delivering {len(delivered)} (Slack off) {deliver_s / max(1, len(delivered)) * 1000:.1f} ms each")
    seed(rt, args.received, days=30, answered_share=0.7, rng=rng)
    rules = clock.policy(rt)
    with rt.db.read_session() as session:
        began = time.perf_counter()
        figures = report.build(session, rules, (NOW - dt.timedelta(days=29)).date(), NOW.date(), NOW)
        report_s = time.perf_counter() - began
    began = time.perf_counter()
    png = render_png(figures, CATEGORIES)
    chart_s = time.perf_counter() - began
    print(f"report     {name}: {figures.received} inquiries over 30 days in {report_s * 1000:.0f} ms; "
          f"chart {chart_s * 1000:.0f} ms ({len(png) // 1024} KB); median {figures.median_hours} h, "
          f"p90 {figures.p90_hours} h, targets met {figures.targets_met_pct}%")
    if args.plot:
        Path(args.plot).write_bytes(png)
    rt.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=2000)
    parser.add_argument("--received", type=int, default=5000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--plot", help="write the 30-day chart here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_calendar(clock.policy(runtime(f"sqlite:///{tmp}/cal.db")))
        if args.database in ("sqlite", "both"):
            bench_backend("sqlite", f"sqlite:///{tmp}/bench.db", args)
        if args.database in ("postgresql", "both"):
            bench_backend("postgresql", f"{PG}?options=-csearch_path%3Dbench_sla", args)


if __name__ == "__main__":
    main()
