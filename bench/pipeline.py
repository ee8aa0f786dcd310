"""Pipeline drain: one worker turning queued new inquiries into cards and acknowledgments.

    .venv/bin/python bench/pipeline.py                          # 2,000 new inquiries, PostgreSQL
    .venv/bin/python bench/pipeline.py --background 100000      # on a store of 100k messages
    .venv/bin/python bench/pipeline.py --database sqlite --queue sqlite

What it does:
1. a fresh database (a PostgreSQL schema, or a SQLite file), optionally filled with
   ``--background`` stored messages of earlier inquiries (their contacts, classifications, events,
   acknowledgments sent and deliveries done), written in bulk, so the run shows whether the cost
   per inquiry grows with the tables;
2. ``--count`` new 10 KB inquiries (seed-set texts with a quoted earlier message, each from its
   own sender) stored and enqueued exactly as the webhook does (``store_raw``, commit,
   ``pipeline.process_message`` on the queue), before the clock starts: the queue is deep;
3. one worker in this process (huey's consumer with ``--threads`` threads and the outbox poller,
   as ``intake worker`` runs them) drains it: parse, thread, classify, inquiry, events, then the
   deliveries: the card posted to a fake Slack (tests/fakeslack.py, real HTTP through slack_sdk),
   the acknowledgment decided, composed and sent over SMTP (aiosmtpd), the card updated to say so.
   Both stand-ins run in a separate process (bench/standins.py). Slack's one-post-a-second pacing
   is switched off (``[slack] post_interval_seconds = 0``): this measures intake, not Slack's pace;
4. the clock stops when every message is processed and every delivery is done.

It prints messages per second, the SQL statements the worker sent per new inquiry (counted with a
SQLAlchemy ``before_cursor_execute`` listener; an ``executemany`` counts once, as one statement
sent), the Slack calls and SMTP messages, and the worker's peak RSS. ``--profile`` adds a cProfile
summary of the worker's threads. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import collections
import datetime as dt
import hashlib
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, event, func, select, text  # noqa: E402

from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.migrate import upgrade  # noqa: E402
from intake.models import Delivery, Message  # noqa: E402

PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
MESSAGE_SIZE = 10 * 1024
CHANNEL = "C111"


# ---- messages ---------------------------------------------------------------------------------


def seed_texts() -> list[dict]:
    texts = []
    for path in sorted((REPO / "intake" / "classify" / "seed").glob("*.jsonl")):
        if path.stem in ("spam", "automated"):
            continue  # people's inquiries: they get a card and an acknowledgment
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line))
    return texts


def make_message(n: int, run: str, seed: dict) -> bytes:
    """A 10 KB inquiry: a seed text on top, the quoted thread it forwards below."""
    head = (
        f"From: Applicant {n} <applicant{n}.{run}@example.org>\r\n"
        f"To: fellowship@intake.example.org\r\n"
        f"Subject: {seed['subject']} ({run}-{n})\r\n"
        f"Message-ID: <pipeline-{run}-{n}@example.org>\r\n"
        f"Date: Tue, 03 Nov 2026 09:12:00 -0500\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    body = seed["body"].replace("\n", "\r\n").encode() + b"\r\n\r\n"
    quote = b"> Thank you for writing to the fellowship team. We read every message and will get back to you.\r\n"
    filler = b"On Mon, 2 Nov 2026 at 10:00, Fellowship Team <fellowship@intake.example.org> wrote:\r\n"
    message = head + body + filler
    while len(message) < MESSAGE_SIZE:
        message += quote
    return message[:MESSAGE_SIZE]


# ---- the store before the run -------------------------------------------------------------------


def fill_background(db: Database, count: int, run: str) -> None:
    """``count`` stored inbound messages of earlier inquiries with everything processing left behind
    (a contact, an inquiry, its classification, events, an acknowledgment sent, deliveries done),
    inserted in bulk: the point is the table sizes the hot path's queries meet."""
    from intake.models import Classification, Contact, Event, Inquiry

    if count <= 0:
        return
    now = dt.datetime.now(dt.timezone.utc)
    rng = random.Random(7)
    categories = ["application", "applicant_status", "partnership", "press", "funding", "general"]
    chunk = 5000
    tables = {m.__table__.name: m.__table__ for m in (Contact, Inquiry, Message, Classification, Event, Delivery)}
    raw = b"From: someone@example.org\r\nSubject: earlier inquiry\r\n\r\n" + b"x" * 900
    done = 0
    next_id = 1
    while done < count:
        n = min(chunk, count - done)
        ids = range(next_id, next_id + n)
        contacts, inquiries, messages, classifications, events, deliveries = [], [], [], [], [], []
        for i in ids:
            at = now - dt.timedelta(days=rng.uniform(0, 365))
            address = f"person{i}.{run}@example{i % 97}.org"
            contacts.append(dict(id=i, address=address, name=f"Person {i}", created_at=at))
            category = rng.choice(categories)
            inquiries.append(dict(
                id=i, contact_id=i, subject=f"Earlier question {i}", thread_subject=f"earlier question {i}",
                status=rng.choice(["new", "open", "waiting", "closed"]), category=category, confidence=0.8,
                needs_review=False, automated=False, language="en", received_at=at, last_message_at=at,
                slack_channel=CHANNEL, slack_ts=f"{at.timestamp():.6f}", version=0, created_at=at, updated_at=at,
            ))
            messages.append(dict(
                id=2 * i - 1, inquiry_id=i, direction="inbound", kind="email", source="email", provider="bench",
                dedupe_key=f"sha:bg-{run}-{i}", message_id=f"bg-{run}-{i}@example.org", sender_address=address,
                sender_name=f"Person {i}", subject=f"Earlier question {i}", text_body="earlier", latest_reply="earlier",
                language="en", automated=False, raw=raw, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw),
                parse_status="parsed", state="processed", attempts=0, created_at=at, processed_at=at,
            ))
            messages.append(dict(
                id=2 * i, inquiry_id=i, direction="outbound", kind="acknowledgment", source="email",
                provider="smtp", dedupe_key=f"ack:{2 * i - 1}", message_id=f"ack-{run}-{i}@intake.example.org",
                sender_address="fellowship@intake.example.org", to_address=address, subject="Re: earlier",
                text_body="Thanks", automated=False, raw=raw, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw),
                parse_status="parsed", state="sent", attempts=1, created_at=at, sent_at=at,
            ))
            classifications.append(dict(inquiry_id=i, message_id=2 * i - 1, category=category, confidence=0.8,
                                        source="model", reasons=["words: earlier"], created_at=at))
            for kind in ("received", "ack_queued", "ack_sent"):
                events.append(dict(inquiry_id=i, actor="system", kind=kind, detail={"message_id": 2 * i - 1},
                                   created_at=at))
            for key, kind in ((f"card:{i}", "slack.card"), (f"ack:{2 * i - 1}", "email.acknowledge"),
                              (f"send:{2 * i}", "email.send")):
                deliveries.append(dict(key=key, kind=kind, inquiry_id=i, args={}, state="done", attempts=1,
                                       requested=1, next_attempt_at=at, deadline=at, created_at=at, done_at=at,
                                       result="done"))
        # One executemany per table needs rows with the same keys: inbound and acknowledgment
        # messages set different columns, so every row gets every key the table's rows use.
        messages = _same_keys(messages)
        with db.engine.begin() as conn:
            conn.execute(tables["contacts"].insert(), contacts)
            conn.execute(tables["inquiries"].insert(), inquiries)
            conn.execute(tables["messages"].insert(), messages)
            conn.execute(tables["classifications"].insert(), classifications)
            conn.execute(tables["events"].insert(), events)
            conn.execute(tables["deliveries"].insert(), deliveries)
        done += n
        next_id += n
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            for table in ("contacts", "inquiries", "messages", "events", "deliveries", "classifications"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))


def _same_keys(rows: list[dict]) -> list[dict]:
    """The rows with the union of their keys (None where a row had none), in one key order."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return [{key: row.get(key) for key in keys} for row in rows]


# ---- the run ------------------------------------------------------------------------------------


class StatementCounter:
    """Counts what the worker sends to the database (one per execute or executemany call)."""

    def __init__(self, engine) -> None:
        self.total = 0
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.on = False
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not self.on:
            return
        words = statement.split(None, 4)
        head = " ".join(words[:3])[:60]
        with self._lock:
            self.total += 1
            self.by_kind[head] += 1


def start_standins() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "standins.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    urls = json.loads(proc.stdout.readline())
    return proc, urls


def standin_counts(proc: subprocess.Popen) -> dict:
    proc.stdin.write("\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def make_database(kind: str, workdir: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'pipeline.db'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG}?options=-csearch_path%3D{schema}&application_name={schema}", drop


def progress(engine) -> tuple[int, int]:
    """(messages still to process, deliveries not yet done), read on the benchmark's own engine
    so that the worker's statement count does not include these."""
    with engine.connect() as conn:
        todo = conn.execute(select(func.count()).select_from(Message.__table__)
                            .where(Message.__table__.c.state == "received")).scalar()
        pending = conn.execute(select(func.count()).select_from(Delivery.__table__)
                               .where(Delivery.__table__.c.state == "pending")).scalar()
    return int(todo or 0), int(pending or 0)


def backend_cpu_seconds(db: Database) -> dict[int, float]:
    """CPU used so far by each of this run's PostgreSQL backends (from /proc, same machine)."""
    if db.engine.dialect.name != "postgresql":
        return {}
    name = db.engine.url.query.get("application_name")
    with db.engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
                            {"n": name}).scalars().all()
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return found


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict:
    from intake.queue import HueyQueue
    from intake.runtime import Runtime
    from intake.outbox import Poller
    from intake import inquiries

    run_id = uuid.uuid4().hex[:6]
    standins, urls = start_standins()
    workdir = Path(tempfile.mkdtemp(prefix="intake-pipeline-"))
    url, drop = make_database(args.database, workdir)
    config = workdir / "intake.toml"
    config.write_text("[slack]\npost_interval_seconds = 0\n[outbox]\npoll_seconds = 1.0\n")
    queue_name = f"intake-pipeline-{run_id}"
    env = {
        "DATABASE_URL": url, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_TRIAGE_CHANNEL": CHANNEL,
        "SLACK_API_URL": urls["slack"], "SMTP_URL": urls["smtp"],
        "INTAKE_FROM_ADDRESS": "fellowship@intake.example.org", "INTAKE_CONFIG": str(config),
        "INTAKE_QUEUE_NAME": queue_name, "INTAKE_QUEUE_PATH": str(workdir / "queue.db"),
    }
    if args.queue == "redis":
        env["REDIS_URL"] = REDIS
    settings = Settings.from_env(env)
    huey_queue = None
    try:
        upgrade(url)
        db = Database(url)
        t0 = time.perf_counter()
        fill_background(db, args.background, run_id)
        fill_seconds = time.perf_counter() - t0
        huey_queue = HueyQueue(settings)
        rt = Runtime(settings, db, queue=huey_queue)
        # Load the model, the language detector and the knowledge base before the clock starts
        # (a worker does this once, at its first message).
        from intake import classify, mail
        from intake.outbound.knowledge import suggest_answer

        seeds = seed_texts()
        warm = mail.parse(make_message(0, run_id, seeds[0]))
        classify.get_classifier(rt).classify(classify.Document.from_parsed(warm))
        classify.detect_language("warm up the language detector", settings)
        suggest_answer(settings, "warm up", "application")

        rng = random.Random(11)
        bodies = [make_message(n, run_id, rng.choice(seeds)) for n in range(1, args.count + 1)]
        from intake.pipeline import request_processing

        for raw in bodies:
            with db.session() as session:
                stored = inquiries.store_raw(session, raw, provider="mime")
            request_processing(rt, stored.message_id)  # as the webhook asks for it
        time.sleep(0.2)  # the doorbell's trailing ring

        counter = StatementCounter(db.engine)
        profiler = ThreadProfiles(args.profile_clock) if args.profile else None
        consumer = huey_queue.huey.create_consumer(workers=args.threads, worker_type="thread", periodic=False,
                                                   initial_delay=0.01, backoff=1.15, max_delay=0.25)
        counter.on = True
        cpu_before, db_cpu_before = time.process_time(), backend_cpu_seconds(db)
        started = time.perf_counter()
        if profiler is not None:
            profiler.follow_new_threads()
        consumer.start()
        poller = Poller(rt).start()
        if profiler is not None:
            profiler.stop_following()
        timeout = started + args.timeout
        watcher = create_engine(url)
        while True:
            time.sleep(0.2)
            todo, pending = progress(watcher)
            if todo == 0 and pending == 0:
                break
            if time.perf_counter() > timeout:
                print(f"  timed out: {todo} messages unprocessed, {pending} deliveries pending", flush=True)
                break
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        db_cpu = sum(v - db_cpu_before.get(pid, 0.0) for pid, v in backend_cpu_seconds(db).items())
        counter.on = False
        poller.stop()
        consumer.stop(graceful=True)
        watcher.dispose()
        counts = standin_counts(standins)
        with db.engine.connect() as conn:
            states = dict(conn.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
            new_inquiries = conn.execute(text("SELECT count(*) FROM inquiries")).scalar() - args.background
        result = {
            "elapsed": elapsed, "count": args.count, "rate": args.count / elapsed,
            "statements": counter.total, "per_inquiry": counter.total / max(1, new_inquiries),
            "by_kind": counter.by_kind, "counts": counts, "deliveries": states,
            "new_inquiries": new_inquiries, "cpu": cpu, "db_cpu": db_cpu, "rss_mb": rss_mb(), "fill_seconds": fill_seconds,
        }
        if profiler is not None:
            stats = profiler.stats()
            if args.profile_out:
                stats.dump_stats(args.profile_out)
            stats.sort_stats(args.profile_sort).print_stats(args.profile_lines)
        db.dispose()
        return result
    finally:
        if huey_queue is not None:
            huey_queue.huey.flush()
        standins.stdin.close()
        standins.wait(10)
        drop()


class ThreadProfiles:
    """A cProfile profiler for each thread the worker starts (huey's consumer threads, the outbox
    poller), merged at the end. cProfile follows only the thread that enabled it, and one
    profiler shared by several threads mixes their call stacks up."""

    def __init__(self, clock: str = "cpu") -> None:
        # "cpu": each thread's own CPU time (time.thread_time), which other processes' load does
        # not inflate; "wall": time including waits on the database, Slack and SMTP.
        self._timer = time.thread_time if clock == "cpu" else time.perf_counter
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def follow_new_threads(self) -> None:
        threading.setprofile(self._hook)

    def stop_following(self) -> None:
        threading.setprofile(None)

    def _hook(self, *_args) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(self._timer)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def stats(self) -> pstats.Stats:
        """Read once the threads have stopped."""
        return pstats.Stats(*self._profiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="new inquiries to drain")
    parser.add_argument("--background", type=int, default=1000, help="messages stored before the run")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--queue", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--threads", type=int, default=2, help="consumer threads (intake worker's default: 2)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-sort", default="cumulative")
    parser.add_argument("--profile-lines", type=int, default=60)
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--profile-out", help="also write the merged profile to this file (pstats)")
    parser.add_argument("--verbose", action="store_true", help="statements by kind")
    args = parser.parse_args()
    r = run(args)
    print(f"{args.database} queue={args.queue} threads={args.threads} background={args.background} stored messages")
    print(f"  {r['count']} new 10 KB inquiries drained in {r['elapsed']:.1f} s: {r['rate']:.1f} msg/s "
          f"({1000 * r['elapsed'] / r['count']:.2f} ms per inquiry)")
    print(f"  worker CPU {1000 * r['cpu'] / r['count']:.2f} ms per inquiry ({r['count'] / r['cpu']:.0f} msg per CPU second), "
          f"its PostgreSQL backends {1000 * r['db_cpu'] / r['count']:.2f} ms; load average {os.getloadavg()[0]:.1f}")
    print(f"  SQL statements sent by the worker: {r['statements']}, {r['per_inquiry']:.1f} per new inquiry")
    print(f"  Slack: {r['counts'].get('chat.postMessage', 0)} posts, {r['counts'].get('chat.update', 0)} updates, "
          f"{r['counts'].get('conversations.history', 0)} lookups; SMTP: {r['counts'].get('smtp', 0)} messages; "
          f"deliveries {r['deliveries']}")
    print(f"  worker peak RSS {r['rss_mb']:.0f} MB (this process); background fill took {r['fill_seconds']:.1f} s")
    if args.verbose:
        for head, n in r["by_kind"].most_common():
            print(f"    {n / max(1, r['new_inquiries']):6.2f}  {head}")


if __name__ == "__main__":
    main()
