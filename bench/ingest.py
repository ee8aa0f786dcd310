"""Ingest throughput, one process: messages per second through each stage of intake.

    .venv/bin/python bench/ingest.py --count 10000 --database both --phase all

Phases, each on a fresh database:
  store           store_raw + commit: what a webhook does before answering
  store+parse     the same, then the full MIME parse (bodies, reply, attachments, signals)
  pipeline        store, then process_message: parse, contact, threading, language, inquiry,
                  events, one commit each (a fixed verdict stands in for the model)
  pipeline+model  the same with the real classifier

The messages are the shared corpus (or examples/ without it) repeated with fresh Message-IDs,
so each one is new. Prints one line per phase; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from intake import inquiries, mail  # noqa: E402
from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.jobs import InlineQueue  # noqa: E402
from intake.runtime import Runtime  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MESSAGE_ID = re.compile(rb"^message-id:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def load_samples() -> list[bytes]:
    corpus = REPO.parent / "shared" / "corpus"
    paths = [p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".eml", ".txt")] if corpus.is_dir() else []
    samples = [p.read_bytes() for p in paths]
    samples = [s for s in samples if mail.looks_like_message(s) is None]
    if not samples:
        samples = [p.read_bytes() for p in sorted((REPO / "examples").glob("*.eml"))]
    return samples


def fresh(raw: bytes, n: int) -> bytes:
    """The same message with a new Message-ID header, so it is not a duplicate."""
    body = MESSAGE_ID.sub(b"", raw, count=1)
    return f"Message-ID: <bench-{n}-{uuid.uuid4().hex}@bench.invalid>\r\n".encode() + body


def make_url(kind: str, workdir: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG}?options=-csearch_path%3D{schema}", drop


PHASES = ("store", "store+parse", "pipeline", "pipeline+model")


def run(kind: str, count: int, phase: str) -> None:
    samples = load_samples()
    messages = [fresh(samples[i % len(samples)], i) for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = make_url(kind, Path(tmp))
        try:
            settings = Settings.from_env({"DATABASE_URL": url})
            db = Database(url)
            db.create_all()
            rt = Runtime(settings, db, queue=InlineQueue())
            if phase == "pipeline":
                from intake.classify import Verdict

                verdict = Verdict("general", 0.5, "rule", ["bench"], None, False, False)
                rt.services["classifier"] = type("Fixed", (), {"classify": lambda self, doc: verdict})()
            if phase.startswith("pipeline"):
                from intake.classify import Document, detect_language, get_classifier

                # Load the model and the language detector before the clock starts.
                get_classifier(rt).classify(Document.from_parsed(mail.parse(messages[0])))
                detect_language("warm up the language detector", settings)
            total_bytes = sum(len(m) for m in messages)
            start = time.perf_counter()
            for raw in messages:
                with db.session() as session:
                    stored = inquiries.store_raw(session, raw, provider="bench")
                if phase == "store+parse":
                    mail.parse(raw)
                elif phase.startswith("pipeline"):
                    with db.session() as session:
                        inquiries.process_message(session, rt, stored.message_id)
            elapsed = time.perf_counter() - start
            print(
                f"{kind:<10} {phase:<15} {count} messages ({total_bytes / 1e6:.1f} MB) in {elapsed:.1f} s: "
                f"{count / elapsed:,.0f} msg/s, {elapsed / count * 1000:.2f} ms/msg",
                flush=True,
            )
            db.dispose()
        finally:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--phase", choices=[*PHASES, "all"], default="all")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    phases = PHASES if args.phase == "all" else [args.phase]
    for phase in phases:
        for kind in kinds:
            run(kind, args.count, phase)


if __name__ == "__main__":
    main()
