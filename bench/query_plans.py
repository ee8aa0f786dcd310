"""What an index is worth on the hot path's lookups at desk size: each query timed on a filled
database with the index it needs and without it (issue 11; the test is
tests/test_query_plans.py, which only says whether an index serves a query).

    .venv/bin/python bench/query_plans.py                       # 100,000 messages, both databases
    .venv/bin/python bench/query_plans.py --messages 20000 --database sqlite

The tables are filled in bulk with rows shaped like a working desk's (a third of the messages
outbound, to 20,000 different people; half as many inquiries as messages, each with its Slack
card), on a fresh schema migrated to head, then analysed. Each query runs `--rounds` times; the
figure is the median: on PostgreSQL the server's own execution time (`EXPLAIN ANALYZE`), on
SQLite the wall time of the statement in this process. "without" drops the index inside a
transaction that is rolled back (PostgreSQL) or on a copy of the file (SQLite); the rate-cap
query is compared with the form it had before (`lower(to_address) = lower(:address)`), which no
index serves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from intake.migrate import upgrade  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PEOPLE = 20_000
SINCE = "2026-11-30 00:00:00+00"  # a day's window, as the caps ask
NOW = "2026-12-01 00:00:00+00"

# (name, SQL with :named parameters, the index it needs, or the old form of the query)
QUERIES: list[tuple[str, str, dict[str, Any], str | None, str | None]] = [
    ("rate caps (outbound_history)",
     "SELECT id, to_address, created_at, kind FROM messages WHERE direction = 'outbound' "
     "AND to_address IN (:address) AND created_at >= :since AND state IN ('queued', 'sending', 'sent')",
     {"address": "person4242@example.org", "since": SINCE}, None,
     "SELECT id, to_address, created_at, kind FROM messages WHERE direction = 'outbound' "
     "AND lower(to_address) = lower(:address) AND created_at >= :since AND state IN ('queued', 'sending', 'sent')"),
    ("intake list (newest 50)",
     "SELECT * FROM inquiries ORDER BY received_at DESC, id DESC LIMIT 50", {}, "ix_inquiries_received_id", None),
    ("card lookup (card_groups)",
     "SELECT * FROM inquiries WHERE slack_channel IN (:channel) AND slack_ts IN (:ts1, :ts2) ORDER BY id",
     {"channel": "C0TRIAGE", "ts1": "1700000000.4242", "ts2": "1700000000.777"}, "ix_inquiries_slack_card", None),
]


def fill_postgres(conn: Any, messages: int) -> None:
    inquiries = messages // 2
    conn.execute(text(f"""
        INSERT INTO inquiries (subject, thread_subject, status, category, needs_review, automated, received_at,
                               last_message_at, slack_channel, slack_ts, version, created_at, updated_at)
        SELECT 'Question ' || g, 'question ' || g, (ARRAY['new','open','waiting','closed','closed','closed'])[1 + g % 6],
               'general', false, false, timestamptz '{NOW}' - g * interval '1 minute',
               timestamptz '{NOW}' - g * interval '1 minute', 'C0TRIAGE', '1700000000.' || g, 0,
               timestamptz '{NOW}' - g * interval '1 minute', timestamptz '{NOW}' - g * interval '1 minute'
        FROM generate_series(1, {inquiries}) g"""))
    conn.execute(text(f"""
        INSERT INTO messages (inquiry_id, direction, kind, source, dedupe_key, to_address, sender_address, raw, sha256,
                              size, parse_status, state, attempts, automated, created_at)
        SELECT 1 + g % {inquiries}, CASE WHEN g % 3 = 0 THEN 'outbound' ELSE 'inbound' END,
               CASE WHEN g % 3 = 0 THEN 'acknowledgment' ELSE 'email' END, 'email', 'sha:' || g,
               CASE WHEN g % 3 = 0 THEN 'person' || (g % {PEOPLE}) || '@example.org' END,
               CASE WHEN g % 3 <> 0 THEN 'person' || (g % {PEOPLE}) || '@example.org' END,
               '\\x00'::bytea, md5(g::text), 1, 'parsed', CASE WHEN g % 3 = 0 THEN 'sent' ELSE 'processed' END,
               0, false, timestamptz '{NOW}' - g * interval '20 seconds'
        FROM generate_series(1, {messages}) g"""))


def fill_sqlite(conn: sqlite3.Connection, messages: int) -> None:
    inquiries = messages // 2
    now = dt.datetime(2026, 12, 1)
    statuses = ["new", "open", "waiting", "closed", "closed", "closed"]
    conn.executemany(
        "INSERT INTO inquiries (subject, thread_subject, status, category, needs_review, automated, received_at, "
        "last_message_at, slack_channel, slack_ts, version, created_at, updated_at) "
        "VALUES (?, ?, ?, 'general', 0, 0, ?, ?, 'C0TRIAGE', ?, 0, ?, ?)",
        ((f"Question {g}", f"question {g}", statuses[g % 6], *(str(now - dt.timedelta(minutes=g)),) * 2,
          f"1700000000.{g}", *(str(now - dt.timedelta(minutes=g)),) * 2) for g in range(1, inquiries + 1)))
    conn.executemany(
        "INSERT INTO messages (inquiry_id, direction, kind, source, dedupe_key, to_address, sender_address, raw, "
        "sha256, size, parse_status, state, attempts, automated, created_at) "
        "VALUES (?, ?, ?, 'email', ?, ?, ?, x'00', ?, 1, 'parsed', ?, 0, 0, ?)",
        ((1 + g % inquiries, "outbound" if g % 3 == 0 else "inbound", "acknowledgment" if g % 3 == 0 else "email",
          f"sha:{g}", f"person{g % PEOPLE}@example.org" if g % 3 == 0 else None,
          None if g % 3 == 0 else f"person{g % PEOPLE}@example.org", f"{g:064x}",
          "sent" if g % 3 == 0 else "processed", str(now - dt.timedelta(seconds=20 * g)))
         for g in range(1, messages + 1)))
    conn.commit()


def pg_time(conn: Any, sql: str, params: dict[str, Any], rounds: int, drop: str | None = None) -> tuple[float, str]:
    """Median execution time in ms (EXPLAIN ANALYZE) and the plan's top scan."""
    times, plan = [], ""
    for _ in range(rounds):
        trans = conn.begin()
        try:
            if drop:
                conn.execute(text(f"DROP INDEX {drop}"))
            found = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params).scalar()
        finally:
            trans.rollback()
        times.append(found[0]["Execution Time"])
        plan = _pg_scan(found[0]["Plan"])
    return statistics.median(times), plan


def _pg_scan(node: dict[str, Any]) -> str:
    if "Relation Name" in node:
        indexes = [node["Index Name"]] if "Index Name" in node else _bitmap_indexes(node)
        return node["Node Type"] + (f" using {', '.join(indexes)}" if indexes else "")
    for child in node.get("Plans", ()):
        found = _pg_scan(child)
        if found:
            return found
    return ""


def _bitmap_indexes(node: dict[str, Any]) -> list[str]:
    found = [node["Index Name"]] if node.get("Node Type") == "Bitmap Index Scan" else []
    for child in node.get("Plans", ()):
        found += _bitmap_indexes(child)
    return found


def sqlite_time(path: Path, sql: str, params: dict[str, Any], rounds: int) -> tuple[float, str]:
    conn = sqlite3.connect(path)
    try:
        plan = "; ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            conn.execute(sql, params).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), plan
    finally:
        conn.close()


def run_postgres(messages: int, rounds: int) -> None:
    schema = f"bench_plans_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            started = time.perf_counter()
            fill_postgres(conn, messages)
            conn.execute(text("ANALYZE"))
            print(f"postgresql: {messages:,} messages, {messages // 2:,} inquiries filled in "
                  f"{time.perf_counter() - started:.1f} s")
        with engine.connect() as conn:
            for name, sql, params, index, old in QUERIES:
                ms, plan = pg_time(conn, sql, params, rounds)
                before_ms, before_plan = pg_time(conn, old or sql, params, rounds, drop=index)
                print(f"  {name:30} {ms:8.3f} ms  {plan}")
                print(f"  {'  before: ' + ('old form' if old else f'without {index}'):30} {before_ms:8.3f} ms  {before_plan}")
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_sqlite(messages: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plans.db"
        upgrade(f"sqlite:///{path}")
        started = time.perf_counter()
        conn = sqlite3.connect(path)
        fill_sqlite(conn, messages)
        conn.execute("ANALYZE")
        conn.close()
        print(f"sqlite: {messages:,} messages, {messages // 2:,} inquiries filled in {time.perf_counter() - started:.1f} s")
        for name, sql, params, index, old in QUERIES:
            ms, plan = sqlite_time(path, sql, params, rounds)
            without = path
            if index:
                without = Path(tmp) / "without.db"
                shutil.copy(path, without)
                with sqlite3.connect(without) as copy:
                    copy.execute(f"DROP INDEX {index}")
            before_ms, before_plan = sqlite_time(without, old or sql, params, rounds)
            print(f"  {name:30} {ms:8.3f} ms  {plan}")
            print(f"  {'  before: ' + ('old form' if old else f'without {index}'):30} {before_ms:8.3f} ms  {before_plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--database", choices=("both", "postgresql", "sqlite"), default="both")
    args = parser.parse_args()
    if args.database in ("both", "postgresql"):
        run_postgres(args.messages, args.rounds)
    if args.database in ("both", "sqlite"):
        run_sqlite(args.messages, args.rounds)


if __name__ == "__main__":
    main()
