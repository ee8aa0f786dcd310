"""`intake ingest` of the shared corpus, as a person runs it, beside two references.

    .venv/bin/python bench/ingest_cli.py                      # 1,000 files, SQLite, 3 rounds
    .venv/bin/python bench/ingest_cli.py --database postgresql --files 2000

The corpus (../shared/corpus: the files that are messages) is copied to a temporary folder until
there are ``--files`` of them, each with a fresh Message-ID, so every one is new. Each round runs,
interleaved, on a fresh database:

* ``intake ingest FOLDER`` in a new process: the command's wall time and CPU time (user + system
  of the process), and the same minus those of ``intake ingest`` of one file on a fresh database
  in the same round (start-up: imports, migrations, the models' load, one message), which is the
  steady rate a long import sees. (The time to the first result line no longer tells start-up:
  the command prints a chunk's results once the chunk is processed.)
* the reference: ``email.message_from_bytes`` + INSERT + COMMIT per file with the database's
  plain driver (sqlite3 / psycopg), the floor of "read, parse, keep".

Medians of the rounds are printed; the machine is shared, so rounds are interleaved.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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
    """(wall seconds, CPU seconds of the command, messages ingested)."""
    if not url.startswith("sqlite"):
        subprocess.run([INTAKE, "db", "upgrade"], check=True, cwd=where,
                       env={**os.environ, "DATABASE_URL": url}, capture_output=True)
    env = {**os.environ, "DATABASE_URL": url, "INTAKE_QUEUE_PATH": str(where / "q.db")}
    env.pop("SLACK_BOT_TOKEN", None)
    env.pop("SMTP_URL", None)
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen([INTAKE, "ingest", str(folder)], cwd=where, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines = sum(1 for _line in proc.stdout)
    proc.wait()
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"intake ingest failed with {proc.returncode}")
    return ended - started, _children_cpu() - cpu_before, lines


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    ingest_wall, ingest_cpu, ingest_steady, steady_cpu, startup, reference = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="intake-ingest-") as tmp:
        where = Path(tmp)
        folder = make_folder(samples, args.files, where)
        # The seed model is fitted once per cache folder; fit it before the clock starts, as any
        # second run of the command finds it.
        os.environ.setdefault("INTAKE_CACHE_DIR", str(where / "cache"))
        (where / "warm").mkdir()
        warm = make_folder(samples, 5, where / "warm")
        (where / "one").mkdir()
        one = make_folder(samples, 1, where / "one")
        url, drop = database(args.database, where)
        try:
            run_ingest(url, warm, where)
        finally:
            drop()
        for _ in range(args.rounds):
            url, drop = database(args.database, where)
            try:
                wall_one, cpu_one, _ = run_ingest(url, one, where)
            finally:
                drop()
            url, drop = database(args.database, where)
            try:
                wall, cpu, lines = run_ingest(url, folder, where)
            finally:
                drop()
            if lines < args.files:
                raise SystemExit(f"intake ingest printed {lines} result lines for {args.files} files")
            startup.append(wall_one)
            ingest_wall.append(args.files / wall)
            ingest_cpu.append(args.files / cpu)
            ingest_steady.append((args.files - 1) / (wall - wall_one) if wall > wall_one else float("nan"))
            steady_cpu.append((args.files - 1) / (cpu - cpu_one) if cpu > cpu_one else float("nan"))
            url, drop = database(args.database, where)
            try:
                reference.append(args.files / run_reference(args.database, url, folder))
            finally:
                drop()
    print(f"intake ingest of {args.files} corpus files ({len(samples)} distinct messages, fresh Message-IDs), "
          f"{args.database}, {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    def row(label: str, figures: list[float], unit: str = "msg/s") -> None:
        print(f"  {label:<36}{statistics.median(figures):7.0f} {unit} "
              f"(rounds: {', '.join(f'{x:.0f}' for x in figures)})")

    row("intake ingest, whole command:", ingest_wall)
    row("  by its CPU time:", ingest_cpu)
    print(f"  {'intake ingest of one file:':<36}{statistics.median(startup):7.2f} s "
          f"(rounds: {', '.join(f'{x:.2f}' for x in startup)})")
    row("intake ingest, after start-up:", ingest_steady)
    row("  by its CPU time:", steady_cpu)
    print(f"  message_from_bytes + INSERT + COMMIT: {statistics.median(reference):5.0f} msg/s "
          f"(rounds: {', '.join(f'{x:.0f}' for x in reference)})")


if __name__ == "__main__":
    main()
