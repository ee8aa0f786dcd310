"""`intake ingest` of the shared corpus, as a person runs it, beside two references.

    .venv/bin/python bench/ingest_cli.py                      # 1,000 files, SQLite, 3 rounds
    .venv/bin/python bench/ingest_cli.py --database postgresql --files 2000

The corpus (../shared/corpus: the files that are messages) is copied to a temporary folder until
there are ``--files`` of them, each with a fresh Message-ID, so every one is new. Each round runs,
interleaved, on a fresh database:

* ``intake ingest FOLDER`` in a new process: the command's wall time, and the same minus the
  time to its first stored message (start-up: imports, migrations, the model's load), which is
  the steady rate a long import sees;
* the reference: ``email.message_from_bytes`` + INSERT + COMMIT per file with the database's
  plain driver (sqlite3 / psycopg), the floor of "read, parse, keep".

Medians of the rounds are printed; the machine is shared, so rounds are interleaved.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email import message_from_bytes
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("INTAKE_SHARED_DIR", REPO.parent / "shared")) / "corpus"
PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MESSAGE_ID = re.compile(rb"^message-id:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def corpus_files() -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from intake import mail

    found = []
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix in (".eml", ".txt", ".msg") and mail.looks_like_message(path.read_bytes()) is None:
            found.append(path.read_bytes())
    if not found:
        raise SystemExit(f"no corpus at {CORPUS} (set INTAKE_SHARED_DIR)")
    return found


def make_folder(samples: list[bytes], count: int, where: Path) -> Path:
    folder = where / "mail"
    folder.mkdir()
    run = uuid.uuid4().hex[:8]
    for n in range(count):
        raw = MESSAGE_ID.sub(b"", samples[n % len(samples)], count=1)
        (folder / f"{n:05d}.eml").write_bytes(f"Message-ID: <bench-{run}-{n}@bench.invalid>\r\n".encode() + raw)
    return folder


def database(kind: str, where: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{where / f'intake-{uuid.uuid4().hex[:6]}.db'}", lambda: None
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG}?options=-csearch_path%3D{schema}", drop


INTAKE = str(Path(sys.executable).parent / "intake")  # the console script pip installed


def run_ingest(url: str, folder: Path, where: Path) -> tuple[float, float, int]:
    """(wall seconds, seconds after the first result line, messages ingested)."""
    if not url.startswith("sqlite"):
        subprocess.run([INTAKE, "db", "upgrade"], check=True, cwd=where,
                       env={**os.environ, "DATABASE_URL": url}, capture_output=True)
    # Unbuffered, so that the first result line shows when the first message is done.
    env = {**os.environ, "DATABASE_URL": url, "INTAKE_QUEUE_PATH": str(where / "q.db"), "PYTHONUNBUFFERED": "1"}
    env.pop("SLACK_BOT_TOKEN", None)
    env.pop("SMTP_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen([INTAKE, "ingest", str(folder)], cwd=where, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = None
    lines = 0
    for _line in proc.stdout:
        if first is None:
            first = time.perf_counter()
        lines += 1
    proc.wait()
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"intake ingest failed with {proc.returncode}")
    return ended - started, ended - (first or ended), lines


def run_reference(kind: str, url: str, folder: Path) -> float:
    files = sorted(folder.iterdir())
    started = time.perf_counter()
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS ref (id INTEGER PRIMARY KEY, subject TEXT, raw BLOB)")
        for path in files:
            raw = path.read_bytes()
            msg = message_from_bytes(raw)
            conn.execute("INSERT INTO ref (subject, raw) VALUES (?, ?)", (str(msg.get("Subject", "")), raw))
            conn.commit()
        conn.close()
    else:
        import psycopg

        schema = re.search(r"search_path%3D(\w+)", url).group(1)
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname=test options=-csearch_path={schema}") as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS ref (id bigserial PRIMARY KEY, subject text, raw bytea)")
            conn.commit()
            for path in files:
                raw = path.read_bytes()
                msg = message_from_bytes(raw)
                conn.execute("INSERT INTO ref (subject, raw) VALUES (%s, %s)", (str(msg.get("Subject", "")), raw))
                conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    samples = corpus_files()
    ingest_wall, ingest_steady, reference = [], [], []
    with tempfile.TemporaryDirectory(prefix="intake-ingest-") as tmp:
        where = Path(tmp)
        folder = make_folder(samples, args.files, where)
        # The seed model is fitted once per cache folder; fit it before the clock starts, as any
        # second run of the command finds it.
        os.environ.setdefault("INTAKE_CACHE_DIR", str(where / "cache"))
        (where / "warm").mkdir()
        warm = make_folder(samples, 5, where / "warm")
        url, drop = database(args.database, where)
        try:
            run_ingest(url, warm, where)
        finally:
            drop()
        for _ in range(args.rounds):
            url, drop = database(args.database, where)
            try:
                wall, steady, lines = run_ingest(url, folder, where)
            finally:
                drop()
            ingest_wall.append(args.files / wall)
            ingest_steady.append(max(0, lines - 1) / steady if steady else float("nan"))
            url, drop = database(args.database, where)
            try:
                reference.append(args.files / run_reference(args.database, url, folder))
            finally:
                drop()
    print(f"intake ingest of {args.files} corpus files ({len(samples)} distinct messages, fresh Message-IDs), "
          f"{args.database}, {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"  intake ingest, whole command:      {statistics.median(ingest_wall):7.0f} msg/s "
          f"(rounds: {', '.join(f'{x:.0f}' for x in ingest_wall)})")
    print(f"  intake ingest, after start-up:     {statistics.median(ingest_steady):7.0f} msg/s "
          f"(rounds: {', '.join(f'{x:.0f}' for x in ingest_steady)})")
    print(f"  message_from_bytes + INSERT + COMMIT: {statistics.median(reference):5.0f} msg/s "
          f"(rounds: {', '.join(f'{x:.0f}' for x in reference)})")


if __name__ == "__main__":
    main()
