"""Privacy costs: secure_delete on ingest, erasing one person, applying retention.

    .venv/bin/python bench/privacy.py --count 5000 --database both

Phases:
  secure_delete   SQLite only: store and the full pipeline, with PRAGMA secure_delete ON (what
                  intake sets), FAST and OFF, on fresh databases, alternating to share the
                  machine's noise
  forget          a desk of --count messages (the corpus, or examples/, repeated as distinct
                  senders); one sender with 5 inquiries is erased. Prints the scan done before the
                  write transaction, the transaction (the write lock on SQLite), and VACUUM +
                  checkpoint (SQLite)
  retention       the same desk where every fifth inquiry is old spam and every fifth old closed:
                  the time `intake purge` takes to delete and redact them

Prints one line per measurement; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import event, update  # noqa: E402

from bench.ingest import load_samples, make_url  # noqa: E402
from intake import inquiries  # noqa: E402
from intake.classify import Verdict  # noqa: E402
from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.models import Inquiry  # noqa: E402
from intake.runtime import Runtime  # noqa: E402
from intake.jobs import InlineQueue

FROM = re.compile(rb"^(from|message-id):[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def as_sender(raw: bytes, n: int, sender: str) -> bytes:
    """The sample with its own From and Message-ID: a distinct person and message."""
    body = FROM.sub(b"", raw)
    return (f"From: Person {n} <{sender}>\r\nMessage-ID: <bench-{n}-{uuid.uuid4().hex}@bench.invalid>\r\n".encode()
            + body)


def runtime(url: str, *, secure_delete: str = "ON") -> Runtime:
    db = Database(url)
    if secure_delete != "ON" and db.is_sqlite:
        # After intake's own pragmas (listeners run in order): the measurement's controls.
        event.listen(db.engine, "connect",
                     lambda conn, _record: conn.execute(f"PRAGMA secure_delete={secure_delete}"))
    db.create_all()
    rt = Runtime(Settings.from_env({"DATABASE_URL": url}), db, queue=InlineQueue())
    # Deliveries (cards, acknowledgments) stay owed: this measures the store, not Slack or SMTP.
    db.on_owed = None
    verdict = Verdict("general", 0.5, "rule", ["bench"], None, False, False)
    rt.services["classifier"] = type("Fixed", (), {"classify": lambda self, doc: verdict})()
    return rt


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage (Linux): unlike wall-clock time,
    the same on a busy machine as on a quiet one."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def ingest(rt: Runtime, messages: list[bytes], *, process: bool) -> float:
    start = time.perf_counter()
    for raw in messages:
        with rt.db.session() as session:
            stored = inquiries.store_raw(session, raw, provider="bench")
        if process:
            with rt.db.session() as session:
                inquiries.process_message(session, rt, stored.message_id)
    return time.perf_counter() - start


def bench_secure_delete(count: int, rounds: int) -> None:
    samples = load_samples()
    messages = [as_sender(samples[i % len(samples)], i, f"p{i}@bench.example") for i in range(count)]
    for process in (False, True):
        phase = "pipeline" if process else "store"
        modes = ("ON", "FAST", "OFF")
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        written: dict[str, list[int]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode in modes:
                with tempfile.TemporaryDirectory() as tmp:
                    url, _drop = make_url("sqlite", Path(tmp))
                    rt = runtime(url, secure_delete=mode)
                    before = written_bytes()
                    results[mode].append(ingest(rt, messages, process=process))
                    rt.db.dispose()
                    written[mode].append(written_bytes() - before)
        for mode in modes:
            best, median = min(results[mode]), sorted(results[mode])[len(results[mode]) // 2]
            print(f"sqlite     {phase:<9} secure_delete={mode:<4} {count} messages: best of {rounds} {best:.2f} s "
                  f"({count / best:,.0f} msg/s), median {median:.2f} s; "
                  f"{min(written[mode]) / 1e6:.1f} MB written", flush=True)


def desk(rt: Runtime, count: int, samples: list[bytes]) -> None:
    """``count`` messages from count/2 people (two each), one of whom (the target) wrote 5."""
    for i in range(count - 5):
        raw = as_sender(samples[i % len(samples)], i, f"p{i // 2}@bench.example")
        with rt.db.session() as session:
            stored = inquiries.store_raw(session, raw, provider="bench")
        with rt.db.session() as session:
            inquiries.process_message(session, rt, stored.message_id)
    for i in range(5):
        raw = as_sender(samples[i], count + i, "target.person@bench.example")
        with rt.db.session() as session:
            stored = inquiries.store_raw(session, raw, provider="bench")
        with rt.db.session() as session:
            inquiries.process_message(session, rt, stored.message_id)


@contextlib.contextmanager
def loaded_desk(kind: str, count: int):
    """A runtime on a fresh database holding ``desk(count)``; dropped afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = make_url(kind, Path(tmp))
        try:
            rt = runtime(url)
            desk(rt, count, load_samples())
            yield rt
            rt.db.dispose()
        finally:
            drop()


def bench_forget(kind: str, count: int) -> None:
    from intake.privacy import actions, erasure, footprint, storage

    with loaded_desk(kind, count) as rt:
        url = rt.settings.database_url
        size = Path(url.removeprefix("sqlite:///")).stat().st_size if kind == "sqlite" else 0
        target = "target.person@bench.example"
        start = time.perf_counter()
        with rt.db.read_session() as session:
            scan = erasure.prescan(session, actions.needles_for(footprint.find(session, target)))
        scanned = time.perf_counter()
        with rt.db.session() as session:
            result = actions.forget(session, target, actor="bench", scan=scan)
        committed = time.perf_counter()
        storage.settle(rt.db, vacuum=True)
        settled = time.perf_counter()
        print(f"{kind:<10} forget    {count} messages{f' ({size / 1e6:.0f} MB file)' if size else ''}: "
              f"scan {scanned - start:.2f} s, transaction {committed - scanned:.2f} s"
              + (f", VACUUM+checkpoint {settled - committed:.2f} s" if kind == "sqlite" else "")
              + f"; erased {result.counts.get('inquiries')} inquiries, {result.counts.get('messages')} messages",
              flush=True)


def bench_retention(kind: str, count: int) -> None:
    from intake.privacy import run

    with loaded_desk(kind, count) as rt:
        old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        with rt.db.session() as session:
            session.execute(update(Inquiry).where(Inquiry.id % 5 == 0).values(
                status="spam", last_message_at=old, received_at=old))
            session.execute(update(Inquiry).where(Inquiry.id % 5 == 1).values(
                status="closed", closed_at=old, last_message_at=old, received_at=old))
        start = time.perf_counter()
        result = run.apply_retention(rt)
        elapsed = time.perf_counter() - start
        print(f"{kind:<10} retention {count} messages: deleted {result.deleted}, redacted {result.redacted} "
              f"inquiries in {elapsed:.2f} s ({(result.deleted + result.redacted) / elapsed:,.0f} inquiries/s)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--phase", choices=["secure_delete", "forget", "retention", "all"], default="all")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if args.phase in ("secure_delete", "all") and "sqlite" in kinds:
        bench_secure_delete(args.count, args.rounds)
    if args.phase in ("forget", "all"):
        for kind in kinds:
            bench_forget(kind, args.count)
    if args.phase in ("retention", "all"):
        for kind in kinds:
            bench_retention(kind, args.count)


if __name__ == "__main__":
    main()
