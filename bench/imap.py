"""IMAP intake throughput: messages per second from a real Dovecot into the store.

    .venv/bin/python bench/imap.py --count 2000 --database both --batch-size 50

Starts a private Dovecot (tests/imap_servers.py; needs dovecot-imapd and root), appends
``--count`` messages (the shared corpus or examples/, repeated with fresh Message-IDs, so each
is new), then times one ``MailboxReader.run_pass()`` per database and mode: fetch in batches,
``store_raw`` + ledger row + commit per message, then MOVE (or the $Intake flag) per batch.
Processing is not included (it runs in the worker, measured by bench/ingest.py). Prints one line
per run; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.imap.connection import connect  # noqa: E402
from intake.imap.reader import MailboxReader  # noqa: E402
from intake.imap.settings import parse_mailbox_url  # noqa: E402
from intake.migrate import upgrade  # noqa: E402
from intake.runtime import Runtime  # noqa: E402
from intake.jobs import InlineQueue
from tests.imap_servers import Dovecot, TokenServer  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MESSAGE_ID = re.compile(rb"^message-id:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def samples() -> list[bytes]:
    corpus = Path(os.environ.get("INTAKE_SHARED_DIR", REPO.parent / "shared")) / "corpus"
    paths = sorted(corpus.rglob("*.eml")) if corpus.is_dir() else sorted((REPO / "examples").glob("*.eml"))
    return [p.read_bytes() for p in paths]


def fresh(raw: bytes) -> bytes:
    body = MESSAGE_ID.sub(b"", raw)
    return f"Message-ID: <bench-{uuid.uuid4().hex}@example.org>\r\n".encode() + body


def database(kind: str, workdir: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        upgrade(url)
        return url, lambda: None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    upgrade(url)

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    base = samples()
    tokens = TokenServer()
    server = Dovecot(tokens).start()
    workdir = Path(tempfile.mkdtemp(prefix="intake-bench-imap-"))
    try:
        print(f"{args.count} messages (mean {sum(map(len, base)) // len(base)} bytes), "
              f"batch {args.batch_size}, load average {os.getloadavg()[0]:.1f}")
        for kind in kinds:
            for mode in ("move", "flag"):
                user = server.new_user()
                server.append(user, [fresh(base[i % len(base)]) for i in range(args.count)])
                url, drop = database(kind, workdir)
                try:
                    settings = Settings.from_env({"DATABASE_URL": url, "INTAKE_QUEUE_PATH": str(workdir / "q.db")})
                    rt = Runtime(settings, queue=InlineQueue())
                    params = {"processed": "Done"} if mode == "move" else {}
                    box = parse_mailbox_url(server.url(user, **params))
                    connection = connect(box)
                    started = time.perf_counter()
                    report = MailboxReader(rt, box, connection.client, batch_size=args.batch_size,
                                           handoff=lambda *_: None).run_pass()
                    elapsed = time.perf_counter() - started
                    connection.close()
                    rt.db.dispose()
                finally:
                    drop()
                assert report.stored == args.count, report.summary()
                print(f"{kind:<10} {mode:<4} {args.count / elapsed:8.0f} msg/s  ({elapsed:.2f} s)")
    finally:
        server.stop()
        tokens.stop()


if __name__ == "__main__":
    main()
